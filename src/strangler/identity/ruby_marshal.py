"""Decode Ruby Marshal 4.8 data that holds plain values only; refuse everything else.

Pure. Never instantiates, imports or looks up anything named in the data: it builds only
None, bool, int, float, str, list and dict, and raises `MarshalRefused` (a ValueError) at the
first byte that would need more. Ruby's own Marshal.load instantiates whatever class the data
names, which is why a leaked Rails secret_key_base plus a Marshal cookie serializer is remote code
execution; reading those cookies here must never have that property.

Rules (the format is Ruby's marshal.c, `r_object0`; doc/marshal.rdoc in ruby/ruby):

- The data starts with the version 4.8 (bytes 04 08), and holds exactly one value: trailing
  bytes are refused although Ruby ignores them.
- Read: nil, true, false, Fixnum `i` (Ruby's compact long: 0; 1..122 and -123..-1 in one byte;
  else a signed byte count of 1..4 little-endian bytes), Bignum `l` (sign, length in 16-bit
  words, little-endian magnitude), Float `f` (its decimal text, or inf, -inf, nan), String `"`,
  Symbol `:` and symbol links `;`, Array `[`, Hash `{`, and object links `@` to values already read.
- `I` (instance variables) is accepted around a String or Symbol only, and only with the ivars
  Ruby itself adds for the encoding: `E` true means UTF-8, `E` false means US-ASCII, `encoding`
  names any other encoding. A String without `I` is ASCII-8BIT (binary) and, like US-ASCII,
  becomes a str through latin-1, one char per byte, so nothing is lost.
- Symbols become str. Hash keys must be str (from a String or Symbol) or int; two keys that
  become the same Python key (a String and a Symbol with the same text) are refused rather
  than silently merged.
- Refused: objects `o`, `_dump`/`marshal_dump` values `u`/`U`, classes `c`, modules `m`/`M`,
  extended values `e`, Structs `S`, user subclasses `C` (HashWithIndifferentAccess is one), Regexp
  `/`, `d` data, hashes with a default `}`, and any unknown byte.
- Limits: nesting deeper than 64, more than 100,000 values (a link counts as the values it points
  at, so shared sub-arrays cannot amplify), a link to a container still being read (a cycle), a
  link or symbol index that does not exist, a Bignum over 256 bytes, truncated data.
"""

from __future__ import annotations

import math
import re
from typing import Final

__all__ = ["MAX_DEPTH", "MAX_VALUES", "MarshalRefused", "loads"]

MAX_DEPTH: Final = 64
MAX_VALUES: Final = 100_000
# 2048 bits: far beyond any id or counter, and small enough that str() of it stays cheap.
_MAX_BIGNUM_BYTES: Final = 256

_HEADER: Final = b"\x04\x08"

# Type bytes Ruby writes (marshal.c TYPE_*) that we never read, and what they are.
_REFUSED_TYPES: Final[dict[int, str]] = {
    ord("o"): "object",
    ord("u"): "_dump value",
    ord("U"): "marshal_dump value",
    ord("c"): "class",
    ord("m"): "module",
    ord("M"): "old-style module",
    ord("e"): "extended object",
    ord("S"): "Struct",
    ord("C"): "user subclass of a core class",
    ord("/"): "Regexp",
    ord("d"): "data object",
    ord("}"): "Hash with a default value",
}
# Types whose next item is the class name (a Symbol, or raw bytes for classes and modules), so
# a refusal can say which class the data wanted.
_NAMED_BY_SYMBOL: Final = frozenset(ord(t) for t in "ouUeSCd")
_NAMED_BY_RAW_STRING: Final = frozenset(ord(t) for t in "cmM")

# What Ruby's w_float writes (ruby_dtoa digits, "e" exponent); Python's float() alone would
# also take "1_0", "infinity" and surrounding spaces.
_FLOAT_TEXT: Final = re.compile(rb"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

# The placeholder for a container that is still being read: a link to it would be a cycle.
_PENDING: Final = object()


class MarshalRefused(ValueError):
    """Marshal data this decoder will not read; `reason` says what and `offset` where."""

    def __init__(self, reason: str, offset: int) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"{reason} (at byte {offset})")


def loads(data: bytes) -> object:
    """Decode one Marshal 4.8 value made of plain data, or raise MarshalRefused."""
    if data[:2] != _HEADER:
        raise MarshalRefused("not Marshal 4.8 data (header is not 04 08)", 0)
    reader = _Reader(data)
    value = reader.read_value(1)
    if reader.pos != len(data):
        raise MarshalRefused(f"{len(data) - reader.pos} trailing bytes", reader.pos)
    return value


class _Reader:
    """One pass over one Marshal stream; holds Ruby's two back-reference tables."""

    __slots__ = ("data", "objects", "pos", "symbols", "values_read", "weights")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = len(_HEADER)
        # Ruby numbers every non-immediate value it reads (r_entry) in one table, and every
        # symbol in another; `@n` and `;n` index them.
        self.objects: list[object] = []
        self.weights: list[int] = []
        self.symbols: list[str | None] = []
        self.values_read = 0

    # -- bytes -------------------------------------------------------------------------------

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise MarshalRefused("truncated data", self.pos)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise MarshalRefused("truncated data", self.pos)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def long(self) -> int:
        """Ruby's compact integer (marshal.c r_long)."""
        code = self.byte()
        if code == 0:
            return 0
        signed = code - 256 if code > 127 else code
        if 4 < signed < 128:
            return signed - 5
        if -129 < signed < -4:
            return signed + 5
        raw = self.take(abs(signed))
        unsigned = int.from_bytes(raw, "little")
        return unsigned if signed > 0 else unsigned - (1 << (8 * len(raw)))

    def length(self, what: str, unit_bytes: int) -> int:
        """A count of items that each need at least `unit_bytes` bytes of what is left."""
        start = self.pos
        count = self.long()
        if count < 0:
            raise MarshalRefused(f"negative {what} length", start)
        if count * unit_bytes > len(self.data) - self.pos:
            raise MarshalRefused(f"{what} length {count} runs past the end", start)
        return count

    def raw_bytes(self) -> bytes:
        return self.take(self.length("byte string", 1))

    # -- tables ------------------------------------------------------------------------------

    def reserve_object(self) -> int:
        self.objects.append(_PENDING)
        self.weights.append(0)
        return len(self.objects) - 1

    def fill_object(self, index: int, value: object, weight: int) -> None:
        self.objects[index] = value
        self.weights[index] = weight

    def count_values(self, how_many: int) -> None:
        self.values_read += how_many
        if self.values_read > MAX_VALUES:
            raise MarshalRefused(f"more than {MAX_VALUES} values", self.pos)

    # -- values ------------------------------------------------------------------------------

    def read_value(self, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise MarshalRefused(f"nested deeper than {MAX_DEPTH}", self.pos)
        start = self.pos
        tag = self.byte()
        self.count_values(1)
        if tag == 0x30:  # "0"
            return None
        if tag == 0x54:  # "T"
            return True
        if tag == 0x46:  # "F"
            return False
        if tag == 0x69:  # "i"
            return self.long()
        if tag == 0x3A:  # ":"
            return self.symbol_body(start, depth, has_ivars=False)
        if tag == 0x3B:  # ";"
            return self.symbol_link(start)
        if tag == 0x40:  # "@"
            return self.object_link(start)
        if tag == 0x6C:  # "l"
            return self.bignum(start)
        if tag == 0x66:  # "f"
            return self.float_value(start)
        if tag == 0x22:  # '"'
            index = self.reserve_object()
            value = self.raw_bytes().decode("latin-1")
            self.fill_object(index, value, 1)
            return value
        if tag == 0x49:  # "I"
            return self.with_ivars(start, depth)
        if tag == 0x5B:  # "["
            return self.array_value(depth)
        if tag == 0x7B:  # "{"
            return self.hash_value(depth)
        raise self.refusal(tag, start)

    def refusal(self, tag: int, start: int) -> MarshalRefused:
        kind = _REFUSED_TYPES.get(tag)
        if kind is None:
            return MarshalRefused(f"unknown type byte 0x{tag:02x}", start)
        name = self.peek_class_name(tag)
        named = f" ({name})" if name else ""
        return MarshalRefused(f"refused Ruby {kind}{named}", start)

    def peek_class_name(self, tag: int) -> str | None:
        """The class name that follows a refused type byte, for the error message only."""
        saved = self.pos
        name: str | None = None
        try:
            if tag in _NAMED_BY_RAW_STRING:
                name = self.raw_bytes().decode("latin-1")
            elif tag in _NAMED_BY_SYMBOL:
                inner = self.byte()
                if inner == 0x3A:  # ":"
                    name = self.raw_bytes().decode("latin-1")
                elif inner == 0x3B:  # ";"
                    index = self.long()
                    name = self.symbols[index] if 0 <= index < len(self.symbols) else None
        except MarshalRefused:
            name = None
        finally:
            self.pos = saved
        # Class names are short; the cut keeps a hostile one from flooding a log line.
        return name[:80] if name else None

    def symbol_body(self, start: int, depth: int, *, has_ivars: bool) -> str:
        # Ruby registers the symbol before its ivars are read (marshal.c r_symreal).
        index = len(self.symbols)
        self.symbols.append(None)
        raw = self.raw_bytes()
        text = self.decode_text(raw, start, depth) if has_ivars else raw.decode("latin-1")
        self.symbols[index] = text
        return text

    def symbol_link(self, start: int) -> str:
        index = self.long()
        if not 0 <= index < len(self.symbols):
            raise MarshalRefused(f"symbol link {index} to nothing", start)
        symbol = self.symbols[index]
        if symbol is None:
            raise MarshalRefused(f"symbol link {index} to a symbol still being read", start)
        return symbol

    def symbol(self) -> str:
        start = self.pos
        tag = self.byte()
        if tag == 0x3A:
            return self.symbol_body(start, 0, has_ivars=False)
        if tag == 0x3B:
            return self.symbol_link(start)
        raise MarshalRefused("expected a symbol", start)

    def object_link(self, start: int) -> object:
        index = self.long()
        if not 0 <= index < len(self.objects):
            raise MarshalRefused(f"object link {index} to nothing", start)
        value = self.objects[index]
        if value is _PENDING:
            raise MarshalRefused(f"object link {index} makes a cycle", start)
        # The link already counted 1; it stands for the whole value it points at.
        self.count_values(self.weights[index] - 1)
        return value

    def bignum(self, start: int) -> int:
        index = self.reserve_object()
        sign = self.byte()
        if sign not in (0x2B, 0x2D):  # "+", "-"
            raise MarshalRefused("Bignum without a sign", start)
        size = self.length("Bignum", 2) * 2
        if size > _MAX_BIGNUM_BYTES:
            raise MarshalRefused(f"Bignum of {size} bytes", start)
        magnitude = int.from_bytes(self.take(size), "little")
        value = -magnitude if sign == 0x2D else magnitude
        self.fill_object(index, value, 1)
        return value

    def float_value(self, start: int) -> float:
        index = self.reserve_object()
        text = self.raw_bytes()
        if text == b"inf":
            value = math.inf
        elif text == b"-inf":
            value = -math.inf
        elif text == b"nan":
            value = math.nan
        elif _FLOAT_TEXT.fullmatch(text):
            value = float(text)
        else:
            # Ruby 1.8 could append raw mantissa bytes after a NUL; no Ruby since 1.9 writes them.
            raise MarshalRefused("Float text is not a number", start)
        self.fill_object(index, value, 1)
        return value

    def with_ivars(self, start: int, depth: int) -> str:
        inner_start = self.pos
        inner = self.byte()
        if inner == 0x3A:  # ":"  a Symbol in a non-ASCII encoding
            return self.symbol_body(start, depth, has_ivars=True)
        if inner in _REFUSED_TYPES:
            raise self.refusal(inner, inner_start)
        if inner != 0x22:  # '"'
            raise MarshalRefused("instance variables on something not a String or Symbol", start)
        index = self.reserve_object()
        raw = self.raw_bytes()
        text = self.decode_text(raw, start, depth)
        self.fill_object(index, text, 1)
        return text

    def decode_text(self, raw: bytes, start: int, depth: int) -> str:
        """Read the ivar list that follows `raw` and decode `raw` in the encoding it names."""
        count_start = self.pos
        count = self.long()
        if not 0 <= count <= 1:
            raise MarshalRefused(f"{count} instance variables on a String", count_start)
        if count == 0:
            return raw.decode("latin-1")
        name_start = self.pos
        name = self.symbol()
        value = self.read_value(depth + 1)
        if name == "E" and isinstance(value, bool):
            if not value:
                return raw.decode("latin-1")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MarshalRefused("String marked UTF-8 is not valid UTF-8", start) from exc
        if name == "encoding" and isinstance(value, str):
            # bytes.decode takes text encodings only: a name like "zlib_codec" or "base64"
            # raises LookupError instead of running a bytes-to-bytes codec on our input.
            try:
                return raw.decode(value)
            except (LookupError, UnicodeDecodeError) as exc:
                raise MarshalRefused(
                    f"String in encoding {value[:40]!r} not decodable", start
                ) from exc
        raise MarshalRefused(f"refused instance variable {name[:40]!r} on a String", name_start)

    def array_value(self, depth: int) -> list[object]:
        index = self.reserve_object()
        before = self.values_read
        size = self.length("Array", 1)
        items: list[object] = []
        for _ in range(size):
            items.append(self.read_value(depth + 1))
        self.fill_object(index, items, self.values_read - before + 1)
        return items

    def hash_value(self, depth: int) -> dict[str | int, object]:
        index = self.reserve_object()
        before = self.values_read
        size = self.length("Hash", 2)
        result: dict[str | int, object] = {}
        for _ in range(size):
            key_start = self.pos
            key = self.read_value(depth + 1)
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise MarshalRefused(f"Hash key of type {type(key).__name__}", key_start)
            if key in result:
                raise MarshalRefused(f"Hash key {str(key)[:40]!r} appears twice", key_start)
            result[key] = self.read_value(depth + 1)
        self.fill_object(index, result, self.values_read - before + 1)
        return result
