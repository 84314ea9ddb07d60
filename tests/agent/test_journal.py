"""The crash-safe journal (agent/journal.py) on a real SQLite file, and outbox delivery
(agent/outbox.py) over it. Times are passed explicitly; nothing sleeps."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.journal import (
    STATE_AUTHORISED,
    STATE_FUELLING,
    Journal,
    SessionRow,
    from_db_id,
    to_db_id,
)
from agent.outbox import OutboxSender

STATION = "34.401.01"
DAY = "2025-03-05"
TOPIC = "spbu/v1/34.401.01/tx"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db", group_commit=True)  # as the station runs it
    yield j
    j.close()


def open_one(j: Journal, vehicle_id: int = 42, pump: int = 1, preset_ml: int = 20_000,
             product: str = "pertalite", day: str = DAY, quota_before_ml: int = 0) -> SessionRow:
    return j.open_session(STATION, pump, vehicle_id, "B 1234 XYZ", product, day,
                          limit_ml=120_000, quota_before_ml=quota_before_ml, preset_ml=preset_ml,
                          price_idr=10_000)


def report(session: SessionRow, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    return (session.tx_id, TOPIC, {"tx_id": session.tx_id, **fields})


def raw_count(path: Path, sql: str) -> int:
    """Read through a separate connection: only what was committed is visible."""
    with sqlite3.connect(str(path)) as other:
        return int(other.execute(sql).fetchone()[0])


# --- durability settings ---------------------------------------------------------------


def test_wal_and_synchronous_full(journal: Journal) -> None:
    assert journal.pragma("journal_mode") == "wal"
    assert journal.pragma("synchronous") == 2  # FULL
    assert journal.pragma("foreign_keys") == 1


def test_wal_mode_is_persistent_in_the_file(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db").close()
    with sqlite3.connect(str(tmp_path / "j.db")) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- sessions and quota ----------------------------------------------------------------


def test_open_session_reserves_preset(journal: Journal) -> None:
    session = open_one(journal, vehicle_id=42, preset_ml=20_000)
    assert session.tx_id == f"{STATION}-{session.seq:08d}"
    assert (session.state, session.preset_ml, session.reserved_ml) == (STATE_AUTHORISED, 20_000, 20_000)
    assert journal.quota_used(42, "pertalite", DAY) == (0, 20_000)
    assert journal.quota_used(42, "solar", DAY) == (0, 0)
    assert journal.quota_used(42, "pertalite", "2025-03-06") == (0, 0)
    assert journal.quota_used(43, "pertalite", DAY) == (0, 0)
    assert journal.open_sessions() == [session]
    # Committed before open_session returned: another connection already sees it.
    assert raw_count(journal.path, "SELECT COUNT(*) FROM sessions WHERE state != 'closed'") == 1
    assert raw_count(journal.path, "SELECT reserved_ml FROM quota") == 20_000


def test_reservations_accumulate(journal: Journal) -> None:
    first = open_one(journal, pump=1, preset_ml=20_000)
    second = open_one(journal, pump=2, preset_ml=5_000)
    assert second.seq > first.seq and second.tx_id != first.tx_id
    assert journal.quota_used(42, "pertalite", DAY) == (0, 25_000)
    assert [s.seq for s in journal.open_sessions()] == [first.seq, second.seq]


def test_close_moves_reserved_to_dispensed_and_queues_one_report(journal: Journal) -> None:
    session = open_one(journal, preset_ml=20_000)
    assert journal.open_sessions()[0].state == STATE_AUTHORISED  # until closed: no 'fuelling' row
    journal.close_session(session, dispensed_ml=12_340, amount_idr=123_400, end_reason="nozzle_down",
                          outbox=report(session, litres=12.34))
    assert journal.quota_used(42, "pertalite", DAY) == (12_340, 0)  # dispensed, not preset
    assert journal.open_sessions() == []
    assert journal.outbox_depth() == 1
    assert journal.wait_durable()
    [row] = journal.outbox_pending()
    assert (row.msg_id, row.topic) == (session.tx_id, TOPIC)
    assert json.loads(row.payload) == {"tx_id": session.tx_id, "litres": 12.34}
    assert journal.dispensed_by_pump() == {1: 12_340}
    assert raw_count(journal.path, "SELECT COUNT(*) FROM outbox") == 1


def test_close_without_report(journal: Journal) -> None:
    session = open_one(journal, preset_ml=5_000)
    journal.close_session(session, 0, 0, "timeout", outbox=None)
    assert journal.quota_used(42, "pertalite", DAY) == (0, 0)
    assert journal.outbox_depth() == 0
    assert journal.open_sessions() == []


def test_close_one_of_two_sessions(journal: Journal) -> None:
    first = open_one(journal, pump=1, preset_ml=20_000)
    second = open_one(journal, pump=2, preset_ml=10_000)
    journal.close_session(first, 15_000, 150_000, "preset_reached", report(first))
    assert journal.quota_used(42, "pertalite", DAY) == (15_000, 10_000)
    assert journal.open_sessions() == [second]


def _assert_untouched(journal: Journal, session: SessionRow) -> None:
    assert journal.open_sessions() == [session]
    quota = journal.quota_used(session.vehicle_id, session.product, session.quota_day)
    assert quota == (0, session.preset_ml)
    assert journal.outbox_depth() == 0
    assert journal.dispensed_by_pump() == {}
    assert raw_count(journal.path, "SELECT COUNT(*) FROM sessions WHERE state = 'closed'") == 0


def test_failed_close_changes_nothing(journal: Journal) -> None:
    session = open_one(journal, preset_ml=20_000)
    with pytest.raises(TypeError):  # a set is not JSON: fails after the session and quota updates
        journal.close_session(session, 12_000, 120_000, "nozzle_down",
                              (session.tx_id, TOPIC, {"pulses": {1, 2, 3}}))
    _assert_untouched(journal, session)
    # The connection is not left inside a transaction: a proper close works afterwards.
    journal.close_session(session, 12_000, 120_000, "nozzle_down", report(session))
    assert journal.quota_used(42, "pertalite", DAY) == (12_000, 0)
    assert journal.outbox_depth() == 1


def test_failed_close_on_duplicate_message_id_changes_nothing(journal: Journal) -> None:
    first = open_one(journal, pump=1, preset_ml=10_000)
    journal.close_session(first, 10_000, 100_000, "preset_reached", ("same-id", TOPIC, {"n": 1}))
    second = open_one(journal, pump=1, preset_ml=7_000)
    with pytest.raises(sqlite3.IntegrityError):
        journal.close_session(second, 7_000, 70_000, "preset_reached", ("same-id", TOPIC, {"n": 2}))
    assert journal.open_sessions() == [second]
    assert journal.quota_used(42, "pertalite", DAY) == (10_000, 7_000)
    assert [json.loads(r.payload) for r in journal.outbox_pending()] == [{"n": 1}]


def test_closing_twice_raises_and_counts_once(journal: Journal) -> None:
    session = open_one(journal, preset_ml=20_000)
    journal.close_session(session, 20_000, 200_000, "preset_reached", report(session))
    with pytest.raises(ValueError, match=f"session {session.tx_id} is not open"):
        journal.close_session(session, 20_000, 200_000, "preset_reached", ("other-id", TOPIC, {}))
    assert journal.quota_used(42, "pertalite", DAY) == (20_000, 0)
    assert journal.outbox_depth() == 1
    assert journal.dispensed_by_pump() == {1: 20_000}


@pytest.mark.parametrize("vehicle_id", [1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1])
def test_db_id_mapping(vehicle_id: int) -> None:
    stored = to_db_id(vehicle_id)
    assert -(2**63) <= stored < 2**63
    assert from_db_id(stored) == vehicle_id


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    vehicle_id=st.integers(2**63, 2**64 - 1) | st.integers(1, 2**64 - 1),
    preset_ml=st.integers(100, 200_000),
)
def test_64_bit_ids_round_trip(journal: Journal, vehicle_id: int, preset_ml: int) -> None:
    before = journal.quota_used(vehicle_id, "solar", DAY)
    session = open_one(journal, vehicle_id=vehicle_id, product="solar", preset_ml=preset_ml)
    [row] = [r for r in journal.open_sessions() if r.seq == session.seq]
    assert row == session
    assert row.vehicle_id == vehicle_id
    assert journal.quota_used(vehicle_id, "solar", DAY) == (before[0], before[1] + preset_ml)
    journal.close_session(session, preset_ml - 50, 0, "nozzle_down", None)
    assert journal.quota_used(vehicle_id, "solar", DAY) == (before[0] + preset_ml - 50, before[1])
    assert all(r.seq != session.seq for r in journal.open_sessions())


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    j = Journal(path)
    closed = open_one(j, vehicle_id=2**64 - 2, pump=1, preset_ml=20_000)
    j.close_session(closed, 18_000, 180_000, "nozzle_down", report(closed, litres=18))
    still_open = open_one(j, vehicle_id=2**63 + 5, pump=2, preset_ml=9_000)
    j.set_meta("boot", "1")
    j.close()
    with sqlite3.connect(path) as db:  # as a journal written before kept a flowing fill
        db.execute("UPDATE sessions SET state=? WHERE seq=?", (STATE_FUELLING, still_open.seq))

    j = Journal(path)
    try:
        [row] = j.open_sessions()
        assert row.seq == still_open.seq and row.vehicle_id == 2**63 + 5 and row.state == STATE_FUELLING
        assert row.opened_at == still_open.opened_at
        assert j.quota_used(2**63 + 5, "pertalite", DAY) == (0, 9_000)
        assert j.quota_used(2**64 - 2, "pertalite", DAY) == (18_000, 0)
        assert [r.msg_id for r in j.outbox_pending()] == [closed.tx_id]
        assert j.get_meta("boot") == "1" and j.get_meta("missing") is None
        assert j.dispensed_by_pump() == {1: 18_000}
        # Sequence numbers, hence transaction ids, never repeat across restarts.
        later = open_one(j, pump=3)
        assert later.seq > still_open.seq
        j.close_session(row, 9_000, 90_000, "nozzle_down", report(row))
        assert j.quota_used(2**63 + 5, "pertalite", DAY) == (9_000, 0)
    finally:
        j.close()


def test_meta_overwrites(journal: Journal) -> None:
    journal.set_meta("k", "a")
    journal.set_meta("k", "b")
    assert journal.get_meta("k") == "b"


# --- outbox delivery -------------------------------------------------------------------


class Publisher:
    """Records what was published; accepts `budget` messages, then refuses (link down)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self.sent: list[str] = []

    def __call__(self, topic: str, payload: bytes) -> bool:
        if self.budget is not None and len(self.sent) >= self.budget:
            return False
        assert topic == TOPIC
        self.sent.append(json.loads(payload)["id"])
        return True


def fill(journal: Journal, count: int) -> list[str]:
    ids = []
    for i in range(count):
        session = open_one(journal, vehicle_id=1000 + i, preset_ml=1_000)
        msg_id = f"m{i}"
        journal.close_session(session, 1_000, 10_000, "preset_reached", (msg_id, TOPIC, {"id": msg_id}))
        ids.append(msg_id)
    assert journal.wait_durable()  # closes are synced by the group-commit thread
    return ids


def test_outbox_publishes_in_order_within_window(journal: Journal) -> None:
    ids = fill(journal, 5)
    sender = OutboxSender(journal, window=3, resend_after_s=15.0)
    pub = Publisher()
    assert sender.pump(0.0, pub) == 3
    assert pub.sent == ids[:3]
    assert sender.in_flight == 3
    assert sender.pump(1.0, pub) == 0  # window full
    assert sender.on_ack(["m0"]) == 1
    assert sender.pump(2.0, pub) == 1
    assert pub.sent == ids[:4]
    assert sender.on_ack(["m1", "m2", "m3"]) == 3
    assert sender.pump(3.0, pub) == 1
    assert pub.sent == ids
    assert sender.pump(4.0, pub) == 0
    assert (sender.sent, sender.in_flight) == (5, 1)


def test_outbox_picks_up_rows_added_later(journal: Journal) -> None:
    fill(journal, 1)
    sender = OutboxSender(journal, window=8)
    pub = Publisher()
    assert sender.pump(0.0, pub) == 1
    session = open_one(journal, vehicle_id=7)
    journal.close_session(session, 500, 5_000, "nozzle_down", ("late", TOPIC, {"id": "late"}))
    assert journal.wait_durable()
    assert sender.pump(1.0, pub) == 1
    assert pub.sent == ["m0", "late"]


def test_outbox_stops_when_publish_refuses(journal: Journal) -> None:
    ids = fill(journal, 5)
    sender = OutboxSender(journal, window=16)
    down = Publisher(budget=2)
    assert sender.pump(0.0, down) == 2
    assert down.sent == ids[:2]
    assert (sender.in_flight, sender.sent) == (2, 2)
    assert sender.pump(1.0, Publisher(budget=0)) == 0
    up = Publisher()
    assert sender.pump(2.0, up) == 3
    assert up.sent == ids[2:]  # resumes where it stopped, without repeating
    assert sender.in_flight == 5


def test_outbox_keeps_order_when_one_publish_fails(journal: Journal) -> None:
    """A refusal in the middle stops the batch: nothing later overtakes the refused message."""
    ids = fill(journal, 4)
    sender = OutboxSender(journal, window=16)
    sent: list[str] = []
    refused: list[str] = []

    def refuse_m1_once(topic: str, payload: bytes) -> bool:
        msg_id = json.loads(payload)["id"]
        if msg_id == "m1" and not refused:
            refused.append(msg_id)
            return False
        sent.append(msg_id)
        return True

    assert sender.pump(0.0, refuse_m1_once) == 1
    assert sent == ["m0"]
    assert sender.pump(1.0, refuse_m1_once) == 3
    assert sent == ids


def test_outbox_resends_everything_after_restart(journal: Journal) -> None:
    ids = fill(journal, 4)
    sender = OutboxSender(journal, window=3)
    first = Publisher()
    sender.pump(0.0, first)
    sender.on_ack(["m1"])
    sender.restart()
    assert sender.in_flight == 0
    again = Publisher()
    assert sender.pump(1.0, again) == 3
    assert again.sent == ["m0", "m2", "m3"]  # oldest first, acknowledged ones gone
    assert ids == ["m0", "m1", "m2", "m3"]


def test_outbox_ack_removes_rows(journal: Journal) -> None:
    fill(journal, 3)
    sender = OutboxSender(journal)
    sender.pump(0.0, Publisher())
    assert sender.on_ack(["m2", "m0"]) == 2
    assert [r.msg_id for r in journal.outbox_pending()] == ["m1"]
    assert sender.in_flight == 1
    assert sender.on_ack(["m0", "unknown"]) == 0  # repeats and strangers remove nothing
    assert sender.acked == 2
    assert journal.outbox_depth() == 1
    # Acknowledgements persist: a fresh sender never sends them again.
    fresh = Publisher()
    OutboxSender(journal).pump(10.0, fresh)
    assert fresh.sent == ["m1"]


def test_outbox_resends_after_timeout(journal: Journal) -> None:
    fill(journal, 3)
    sender = OutboxSender(journal, window=8, resend_after_s=15.0)
    pub = Publisher()
    sender.pump(100.0, pub)
    sender.on_ack(["m1"])
    assert sender.pump(115.0, pub) == 0  # exactly the timeout: not yet
    assert pub.sent == ["m0", "m1", "m2"]
    assert sender.pump(115.001, pub) == 2
    assert pub.sent == ["m0", "m1", "m2", "m0", "m2"]
    assert sender.in_flight == 2
    assert sender.pump(120.0, pub) == 0  # the resent ones have fresh timers


def test_outbox_empty(journal: Journal) -> None:
    sender = OutboxSender(journal)
    pub = Publisher()
    assert sender.pump(0.0, pub) == 0
    assert pub.sent == [] and sender.in_flight == 0


def test_open_sessions_is_answered_from_the_partial_index(tmp_path: Path) -> None:
    """Start-up must not read the history: the query open_sessions() really runs is
    planned on the partial index of open sessions, not a scan of the table."""
    journal = Journal(tmp_path / "j.sqlite")
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    journal.open_sessions()
    journal._db.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    plan = journal._db.execute("EXPLAIN QUERY PLAN " + selects[0]).fetchall()
    assert any("sessions_open" in str(row) for row in plan), plan
    assert not any("TEMP B-TREE" in str(row) for row in plan), plan
    journal.close()
