"""PostgreSQL's pgoutput logical replication messages, decoded as far as `data watch` needs them:
which rows of which tables changed, in which transaction, committed when.

Pure: bytes in, values out. The formats are PostgreSQL's, protocol version 1 ("Logical
Replication Message Formats", https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
big-endian integers, NUL-terminated strings, column values as text (the default: the `binary`
option is never asked for). Messages the watch has no use for (Origin, Type, logical decoding
Message) decode to None.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

# pgoutput's timestamps count microseconds from 2000-01-01 00:00 UTC (PostgreSQL's epoch).
_PG_EPOCH_UNIX_S = 946_684_800


class PgoutputError(ValueError):
    """A message that does not parse as protocol version 1, or names an unknown relation."""


class Unchanged:
    """A TOASTed value an UPDATE did not change: pgoutput leaves it out ('u')."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = Unchanged()
Value = str | None | Unchanged


@dataclass(frozen=True, slots=True)
class Relation:
    """A table as a Relation message describes it; `columns` are (name, is_part_of_key)."""

    relid: int
    schema: str
    name: str
    columns: tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    committed_at: float  # unix time


@dataclass(frozen=True, slots=True)
class Commit:
    end_lsn: int  # the position just past the transaction: where the next one starts
    committed_at: float


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row inserted, updated or deleted: its images by column name (the old key or old
    row when pgoutput sends one, then the new row; a delete has only the old)."""

    relation: Relation
    kind: str  # "insert", "update" or "delete"
    images: tuple[Mapping[str, Value], ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    relations: tuple[Relation, ...]


Message = Begin | Commit | Relation | RowChange | Truncate | None


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL spells it: two hex halves, `16/B374D848`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.data):
            raise PgoutputError(f"message ends after {len(self.data)} bytes, wanted {end}")
        chunk = self.data[self.at : end]
        self.at = end
        return chunk

    def byte(self) -> str:
        return chr(self.take(1)[0])

    def int8(self) -> int:
        return int(self.take(1)[0])

    def int16(self) -> int:
        value: int = struct.unpack(">h", self.take(2))[0]
        return value

    def int32(self) -> int:
        value: int = struct.unpack(">i", self.take(4))[0]
        return value

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">q", self.take(8))[0]
        return value

    def string(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise PgoutputError("string without its terminating NUL")
        text = self.data[self.at : end].decode("utf-8", "replace")
        self.at = end + 1
        return text


def _timestamp(microseconds: int) -> float:
    return _PG_EPOCH_UNIX_S + microseconds / 1_000_000


class PgoutputDecoder:
    """Decodes one slot's messages in order; keeps the Relation messages it has seen (pgoutput
    sends a table's before its first change in each session, and again when it changes)."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}

    def __repr__(self) -> str:
        return f"<PgoutputDecoder {len(self.relations)} relations>"

    def decode(self, data: bytes) -> Message:
        reader = _Reader(bytes(data))
        tag = reader.byte()
        if tag == "B":
            final_lsn = reader.int64()
            return Begin(final_lsn, _timestamp(reader.int64()))
        if tag == "C":
            reader.int8()  # flags, unused
            reader.int64()  # the commit record's LSN
            end_lsn = reader.int64()
            return Commit(end_lsn, _timestamp(reader.int64()))
        if tag == "R":
            relation = self._relation(reader)
            self.relations[relation.relid] = relation
            return relation
        if tag == "I":
            relation = self._known(reader.uint32())
            if reader.byte() != "N":
                raise PgoutputError("Insert without its new tuple")
            return RowChange(relation, "insert", (self._tuple(reader, relation),))
        if tag == "U":
            relation = self._known(reader.uint32())
            images = []
            part = reader.byte()
            if part in ("K", "O"):
                images.append(self._tuple(reader, relation))
                part = reader.byte()
            if part != "N":
                raise PgoutputError("Update without its new tuple")
            images.append(self._tuple(reader, relation))
            return RowChange(relation, "update", tuple(images))
        if tag == "D":
            relation = self._known(reader.uint32())
            if reader.byte() not in ("K", "O"):
                raise PgoutputError("Delete without its old key or tuple")
            return RowChange(relation, "delete", (self._tuple(reader, relation),))
        if tag == "T":
            count = reader.int32()
            reader.int8()  # options (CASCADE, RESTART IDENTITY)
            return Truncate(tuple(self._known(reader.uint32()) for _ in range(count)))
        return None

    def _known(self, relid: int) -> Relation:
        relation = self.relations.get(relid)
        if relation is None:
            raise PgoutputError(f"a change of relation {relid} before its Relation message")
        return relation

    @staticmethod
    def _relation(reader: _Reader) -> Relation:
        relid = reader.uint32()
        schema = reader.string()
        name = reader.string()
        reader.int8()  # replica identity setting
        columns = []
        for _ in range(reader.int16()):
            flags = reader.int8()
            column = reader.string()
            reader.uint32()  # type OID
            reader.int32()  # type modifier
            columns.append((column, bool(flags & 1)))
        return Relation(relid, schema, name, tuple(columns))

    @staticmethod
    def _tuple(reader: _Reader, relation: Relation) -> dict[str, Value]:
        count = reader.int16()
        if count > len(relation.columns):
            raise PgoutputError(
                f"a tuple of {count} columns for {relation.schema}.{relation.name}, "
                f"whose Relation message has {len(relation.columns)}"
            )
        values: dict[str, Value] = {}
        for index in range(count):
            name = relation.columns[index][0]
            kind = reader.byte()
            if kind == "n":
                values[name] = None
            elif kind == "u":
                values[name] = UNCHANGED
            elif kind in ("t", "b"):
                values[name] = reader.take(reader.int32()).decode("utf-8", "replace")
            else:
                raise PgoutputError(f"unknown tuple value kind {kind!r}")
        return values
