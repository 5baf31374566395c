"""The ledger journal on its own: order, rotation, adoption of a dead process's segments,
a torn last line, and its bound on disk."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from gateway.accounting.journal import Journal, JournalFull


def _row(i: int) -> dict[str, object]:
    return {"uid": f"u{i}", "n": i, "pad": "x" * 40}


def _drain(journal: Journal, batch: int = 7) -> list[object]:
    seen: list[object] = []
    while True:
        rows, used = journal.read(batch)
        if not used:
            return seen
        seen.extend(r["n"] for r in rows)
        journal.commit(len(rows), used)


def test_rows_come_back_in_order_across_segments_and_segments_are_deleted(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    journal.open()
    for i in range(300):
        journal.append(_row(i))
    assert len(list(tmp_path.glob("*.jsonl"))) > 3  # rotated
    assert journal.pending_rows == 300
    assert _drain(journal) == list(range(300))
    assert journal.pending_rows == 0 and journal.pending_bytes == 0
    assert len(list(tmp_path.glob("*.jsonl"))) == 1  # only the one still being written
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_a_dead_process_segments_are_adopted_and_a_live_ones_are_not(tmp_path: Path) -> None:
    dead = Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    dead.open()
    for i in range(100):
        dead.append(_row(i))
    # Die without closing: the OS frees the lock, the segments stay.
    os.close(dead._lock_fd)  # type: ignore[arg-type]
    alive = tmp_path / "999-1.lock"
    alive_fd = os.open(alive, os.O_RDWR | os.O_CREAT)
    fcntl.flock(alive_fd, fcntl.LOCK_EX)
    (tmp_path / "999-1-1.jsonl").write_bytes(b'{"n": -1}\n')
    heir = Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    assert heir.open() == 100
    heir.append(_row(100))
    assert _drain(heir) == list(range(101))
    assert (tmp_path / "999-1-1.jsonl").exists()  # its owner still runs
    heir.close()
    os.close(alive_fd)
    assert {p.name for p in tmp_path.iterdir()} == {"999-1.lock", "999-1-1.jsonl"}


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "1-1-1.jsonl").write_bytes(b'{"n": 0}\n{"n": 1}\n{"n": 2, "tor')
    journal = Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20)
    journal.open()
    assert _drain(journal) == [0, 1]
    assert not (tmp_path / "1-1-1.jsonl").exists()
    assert journal.pending_bytes == 0


def test_the_journal_refuses_rows_past_its_bound(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=4096, max_bytes=2000)
    journal.open()
    with pytest.raises(JournalFull):
        for i in range(100):
            journal.append(_row(i))
    assert journal.pending_bytes >= 2000
    _drain(journal)
    journal.append(_row(0))  # room again once the database took them


def test_the_ledger_table_is_derived_from_the_typed_row() -> None:
    import dataclasses
    import typing

    from gateway.accounting.row import LedgerRow
    from gateway.accounting.tables import ledger_table

    hints = typing.get_type_hints(LedgerRow)
    columns = {c.name: c for c in ledger_table.columns if c.name != "id"}
    assert list(columns) == [f.name for f in dataclasses.fields(LedgerRow)]
    for name, column in columns.items():
        assert column.nullable == (type(None) in typing.get_args(hints[name])), name
    assert columns["uid"].unique and columns["ts"].index
