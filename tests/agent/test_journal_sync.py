"""Group commit (agent/journal_sync.py): a close's record is never handed out before the
close is on stable storage, and a close needs no fsync of its own when the next session's
synced commit comes soon enough."""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.journal import Journal, SessionRow

DAY = "2026-11-30"


def open_one(journal: Journal, vehicle_id: int) -> SessionRow:
    return journal.open_session("34.401.01", 1, vehicle_id, "B 1 XY", "pertalite", DAY, 60_000, 0, 10_000, 10_000)


def close(journal: Journal, session: SessionRow) -> None:
    journal.close_session(session, 5_000, 50_000, "nozzle_hung", (session.tx_id, "spbu/v1/x/tx", {"id": 1}))


def test_record_held_until_the_close_is_durable(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", group_commit=True)
    journal.syncer.group_s = 30.0  # no sync of its own in this test's time
    try:
        first = open_one(journal, 1)
        close(journal, first)
        assert journal.outbox_depth() == 1  # committed ...
        assert journal.outbox_pending() == []  # ... but not yet on stable storage: held
        open_one(journal, 2)  # the next scan's synced commit carries the close too
        assert [r.msg_id for r in journal.outbox_pending()] == [first.tx_id]
        assert journal.syncer.fsyncs == 0
    finally:
        journal.close()


def test_close_synced_by_the_thread_when_no_scan_follows(tmp_path: Path) -> None:
    woken: list[bool] = []
    journal = Journal(tmp_path / "j.sqlite", on_durable=lambda: woken.append(True), group_commit=True)
    journal.syncer.group_s = 0.05
    try:
        session = open_one(journal, 1)
        assert journal.syncer.fsyncs == 0
        close(journal, session)
        assert journal.wait_durable(5)
        assert journal.syncer.fsyncs == 1 and woken == [True]
        assert [r.msg_id for r in journal.outbox_pending()] == [session.tx_id]
        journal.outbox_ack([session.tx_id])  # no sync either: a lost delete only resends
        assert journal.syncer.fsyncs == 1
    finally:
        journal.close()


def test_without_group_commit_a_close_is_synced_in_its_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    try:
        session = open_one(journal, 1)
        close(journal, session)
        assert [r.msg_id for r in journal.outbox_pending()] == [session.tx_id]
    finally:
        journal.close()


def test_checkpoints_run_in_the_thread_and_keep_the_data(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", group_commit=True)
    journal.syncer.group_s = 0.0
    journal.syncer.checkpoint_commits = 10
    try:
        for vid in range(1, 15):
            session = open_one(journal, vid)
            close(journal, session)
            assert journal.wait_durable(5)
        assert journal.syncer.checkpoints >= 1
    finally:
        journal.close()
    with sqlite3.connect(tmp_path / "j.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions WHERE state='closed'").fetchone()[0] == 14
        assert db.execute("PRAGMA page_size").fetchone()[0] == 512


def test_records_are_stored_deflated_and_read_back_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    try:
        session = open_one(journal, 1)
        record = {"tx_id": session.tx_id, "pad": "x" * 700}
        journal.close_session(session, 1, 1, "nozzle_hung", (session.tx_id, "t", record))
        [row] = journal.outbox_pending()
        assert row.payload.startswith(b"{") and b"x" * 700 in row.payload
        with sqlite3.connect(tmp_path / "j.sqlite") as db:
            stored = db.execute("SELECT payload FROM outbox").fetchone()[0]
        assert len(stored) < 200
    finally:
        journal.close()


def test_checkpoints_come_even_when_every_close_rides_on_a_scan(tmp_path: Path) -> None:
    """A busy station: each close is made durable by the next scan's commit, the thread never
    syncs on its own, yet the WAL is still checkpointed (it must not grow without bound)."""
    journal = Journal(tmp_path / "j.sqlite", group_commit=True)
    journal.syncer.group_s = 30.0
    journal.syncer.checkpoint_commits = 10
    try:
        session = open_one(journal, 1)
        for vid in range(2, 12):
            close(journal, session)
            session = open_one(journal, vid)
        assert journal.syncer.fsyncs == 0
        assert _eventually(lambda: journal.syncer.checkpoints >= 1)
    finally:
        journal.close()


def _eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


CHILD = """
import sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from agent.journal import Journal
j = Journal(Path(sys.argv[1]), group_commit=True)
j.syncer.group_s = 0.0
j.syncer.checkpoint_commits = int(sys.argv[2])
main = threading.get_native_id()
marks = [time.monotonic()]  # after the schema's commits at start-up
for i in range(12):
    s = j.open_session("34.401.01", 1, 100 + i, "B 1 XY", "pertalite", "2026-11-30", 60_000, 0, 10_000, 10_000)
    j.close_session(s, 5_000, 50_000, "nozzle_hung", (s.tx_id, "spbu/v1/x/tx", {"id": i}))
    j.wait_durable(5)
    j.outbox_ack([s.tx_id])
    deadline = time.monotonic() + 5
    while j.syncer.checkpoints * 2 < i and time.monotonic() < deadline:
        time.sleep(0.01)  # the checkpoint (and the WAL's restart) before the next scan
    time.sleep(0.05)
    marks.append(time.monotonic())
print(main, j.syncer.checkpoints, j.syncer.restarts, *marks)
j.close()
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the fsync shim (`make test` installs gcc)")
def test_after_a_checkpoint_the_station_loop_syncs_only_its_scans(tmp_path: Path) -> None:
    """A checkpoint that copies the whole WAL makes the next commit start it over, and SQLite
    syncs the new WAL header in that commit: the sync thread makes that commit itself, so
    each scan on the station loop still costs one sync, and nothing else there syncs."""
    from tests.bench.fsync_shim import build_shim, read_log

    lib = build_shim(tmp_path)
    log = tmp_path / "syncs.log"
    env = {**os.environ, "LD_PRELOAD": str(lib), "SPBU_FSYNC_LOG": str(log)}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "j.sqlite"), "6", str(root)],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    main, checkpoints, restarts, marks = int(out[0]), int(out[1]), int(out[2]), [float(m) for m in out[3:]]
    assert checkpoints >= 3 and restarts >= 3
    wal = [(tid, start) for tid, start, _, name in read_log(log) if name.endswith("-wal")]
    on_loop = [start for tid, start in wal if tid == main]
    # One sync per scan (12 opens; closes and acknowledgements are synced by the thread).
    for begin, end in itertools.pairwise(marks):
        assert sum(begin <= t < end for t in on_loop) == 1


def test_lazy_commits_wait_for_the_group_unless_urgent_and_their_outbox_rows_are_held(tmp_path: Path) -> None:
    """The payment desk's writes: no sync on the caller's thread; a plain one waits for the
    group window (here far away), an urgent one is synced at once and carries the earlier."""
    journal = Journal(tmp_path / "j.sqlite", group_commit=True)
    journal.syncer.group_s = 30.0
    try:
        with journal.lazy() as db:
            db.execute("INSERT INTO outbox (msg_id, topic, payload, created_at) VALUES ('r1', 't', X'7b7d', 0)")
        plain = journal.last_commit
        time.sleep(0.3)
        assert not journal.is_durable(plain) and journal.syncer.fsyncs == 0
        assert journal.outbox_pending() == []  # queued, not yet on the card: held
        with journal.lazy(urgent=True) as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        urgent = journal.last_commit
        assert journal.syncer.wait_durable(urgent, 5) and journal.is_durable(plain)
        assert journal.syncer.fsyncs == 1
        assert [r.msg_id for r in journal.outbox_pending()] == ["r1"]
    finally:
        journal.close()
