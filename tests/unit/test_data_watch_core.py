"""The pure parts of `data watch`: pgoutput messages decoded from their documented byte layout
(PostgreSQL, "Logical Replication Message Formats"), and the bounded queue of keys to check."""

from __future__ import annotations

import struct

import pytest

from strangler.data.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    PgoutputDecoder,
    PgoutputError,
    RowChange,
    lsn_text,
    parse_lsn,
)
from strangler.data.watch_queue import CommitLog, PendingKeys


def _relation() -> bytes:
    columns = b"".join(
        struct.pack(">b", flags) + name + b"\0" + struct.pack(">Ii", 20, -1)
        for flags, name in ((1, b"id"), (0, b"name"))
    )
    return (
        b"R" + struct.pack(">I", 16384) + b"public\0items\0" + b"d" + struct.pack(">h", 2) + columns
    )


def _tuple(*values: bytes | str | None) -> bytes:
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "u":
            out += b"u"
        else:
            assert isinstance(value, bytes)
            out += b"t" + struct.pack(">i", len(value)) + value
    return out


def test_pgoutput_messages_decode_to_the_changed_rows() -> None:
    decoder = PgoutputDecoder()
    begin = decoder.decode(b"B" + struct.pack(">qqi", 0x16B3748, 1_000_000, 7))
    assert begin == Begin(0x16B3748, 946_684_801.0)
    decoder.decode(_relation())
    insert = decoder.decode(b"I" + struct.pack(">I", 16384) + b"N" + _tuple(b"42", "é".encode()))
    assert isinstance(insert, RowChange)
    assert (insert.kind, insert.images) == ("insert", ({"id": "42", "name": "é"},))
    update = decoder.decode(
        b"U" + struct.pack(">I", 16384) + b"K" + _tuple(b"41", None) + b"N" + _tuple(b"42", "u")
    )
    assert isinstance(update, RowChange)
    assert update.images == ({"id": "41", "name": None}, {"id": "42", "name": UNCHANGED})
    delete = decoder.decode(b"D" + struct.pack(">I", 16384) + b"K" + _tuple(b"42", None))
    assert isinstance(delete, RowChange) and delete.kind == "delete"
    commit = decoder.decode(b"C" + struct.pack(">bqqq", 0, 0x16B3748, 0x16B3790, 2_000_000))
    assert commit == Commit(0x16B3790, 946_684_802.0)
    assert decoder.decode(b"O" + struct.pack(">q", 1) + b"origin\0") is None


@pytest.mark.parametrize(
    "message",
    [b"I" + struct.pack(">I", 99) + b"N" + _tuple(b"1"), b"B\0\0", _relation()[:-3]],
)
def test_pgoutput_refuses_what_it_cannot_read(message: bytes) -> None:
    with pytest.raises(PgoutputError):
        PgoutputDecoder().decode(message)


def test_lsn_text_round_trips() -> None:
    assert lsn_text(parse_lsn("16/B374D848")) == "16/B374D848"


def test_the_queue_coalesces_bounds_and_holds_back_the_confirmation() -> None:
    queue = PendingKeys(max_pending=2, lag_s=5.0, max_lag_s=60.0)
    log = CommitLog()
    assert queue.add("t", (1,), 0, 100.0) and not queue.add("t", (1,), 1, 101.0)
    log.add(0, "p0", queued_keys=True)
    log.add(1, "p1", queued_keys=False)
    queue.add("t", (2,), 2, 102.0)
    log.add(2, "p2", queued_keys=True)
    assert queue.room() == 0 and queue.coalesced == 1
    assert queue.take_due(104.0, 10) == []
    (first,) = queue.take_due(105.0, 10)
    assert log.confirmable(queue.oldest_seq()) is None  # key 1 (seq 0) still waits
    assert not queue.is_final(first, 105.0)
    queue.retry(first, 105.0)
    (second,) = queue.take_due(107.0, 10)
    queue.done(second)  # key 2 handled, key 1 still holds the stream back
    assert log.confirmable(queue.oldest_seq()) is None
    (again,) = queue.take_due(161.0, 10)
    assert queue.is_final(again, 161.0)  # 60 s after its newest change
    queue.done(again)
    assert log.confirmable(queue.oldest_seq()) == "p2"


def test_the_commit_log_keeps_only_where_a_confirmation_can_stop() -> None:
    log = CommitLog()
    for seq in range(10):
        log.add(seq, f"p{seq}", queued_keys=True)
    # Keys still wait from transactions 3 and 7: the stream can stop before each, or at the end.
    log.compact([7, 3])
    assert len(log) == 3
    assert log.confirmable(3) == "p2"
    assert log.confirmable(7) == "p6"
    assert log.confirmable(None) == "p9"
