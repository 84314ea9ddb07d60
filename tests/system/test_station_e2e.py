"""The station end to end on real parts: private mosquitto, pseudo-terminal devices, the
relay board's safety core, the SQLite journal, Ed25519-signed documents.

Reconciliation is computed here from three independent sources: the dispensers'
totalisers, the journal file and what headquarters stored."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli.demo import DemoStation, script_customers
from agent.journal import from_db_id
from simulators.broker import MosquittoBroker
from tests.conftest import validate
from tests.helpers import MqttRecorder

pytestmark = pytest.mark.integration


def journal_rows(path: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM sessions ORDER BY seq")]
    finally:
        db.close()


def outbox_depth(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


class Recorder(MqttRecorder):
    """A plain MQTT client watching everything the station and headquarters publish."""

    def __init__(self, broker: MosquittoBroker) -> None:
        super().__init__(broker, ["spbu/v1/#", "hq/v1/#"], "test-recorder")

    def on(self, suffix: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received(lambda topic: topic.endswith(suffix))]


def assert_reconciled(demo: DemoStation, start_totals: dict[int, int]) -> list[dict[str, Any]]:
    assert demo.hq is not None
    rows = journal_rows(demo.journal_path)
    assert rows, "nothing was journaled"
    assert all(r["state"] == "closed" for r in rows)
    hq = {t["tx_id"]: t for t in demo.hq.transactions()}
    assert set(hq) == {r["tx_id"] for r in rows}, "headquarters and journal hold different transactions"
    for number in demo.products:
        totaliser = demo.board.totaliser_ml(number - 1) - start_totals[number]
        journal = sum(r["dispensed_ml"] for r in rows if r["pump"] == number)
        at_hq = sum(t["dispensed_ml"] for t in hq.values() if t["pump"] == number)
        assert totaliser == journal == at_hq, f"pump {number}: {totaliser} / {journal} / {at_hq}"
    for row in rows:
        assert hq[row["tx_id"]]["dispensed_ml"] == row["dispensed_ml"]
        assert hq[row["tx_id"]]["vehicle_id"] == str(from_db_id(row["vehicle_id"]))
    assert outbox_depth(demo.journal_path) == 0
    return rows


@pytest.mark.parametrize("pump_kind", ["relay", "dart"])
def test_demo_flow_reconciles_and_decides(mosquitto: MosquittoBroker, tmp_path: Path, pump_kind: str) -> None:
    recorder = Recorder(mosquitto)
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, pump_kind=pump_kind)
    try:
        demo.start()
        start_totals = {n: demo.board.totaliser_ml(n - 1) for n in demo.products}
        script = script_customers(demo.registry, demo.products, 12, demo.token)
        outcomes = demo.serve(script, timeout_s=60)
        demo.wait_delivered(20)
        assert len(outcomes) == len(script)
        for outcome in outcomes:
            assert outcome.decision is not None, outcome.customer
            got = "ok" if outcome.decision["ok"] else outcome.decision["reason"]
            assert got == outcome.customer.expect, outcome.customer
        rows = assert_reconciled(demo, start_totals)

        # Fills capped by quota stopped at the preset (the board enforces it in pulses) and
        # quota is charged with what flowed, not with the preset.
        capped = [o for o in outcomes if o.customer.label == "capped by quota"]
        assert capped
        for outcome in capped:
            assert outcome.transaction is not None
            row = next(r for r in rows if r["tx_id"] == outcome.transaction["tx_id"])
            assert row["end_reason"] == "preset_reached"
            assert row["preset_ml"] < outcome.customer.want_ml
            assert row["preset_ml"] <= row["dispensed_ml"] <= row["preset_ml"] + 20  # 2 pulses overrun
            assert row["quota_before_ml"] + row["dispensed_ml"] >= row["limit_ml"]

        # Every message on the wire matches its published schema.
        time.sleep(0.3)
        txs = recorder.on("/tx")
        assert {t["tx_id"] for t in txs} == {r["tx_id"] for r in rows}
        for tx in txs:
            validate("tx", tx)
        for event in recorder.on("/event"):
            validate("event", event)
        states = recorder.on("/state")
        assert any(s["state"] == "online" for s in states)
        for state in states:
            validate("state", state)
        for ack in recorder.on(f"ack/{demo.config().station_id}"):
            validate("ack", ack)
        beats = recorder.on("/heartbeat")
        assert beats, "a connected station sends a heartbeat at once"
        for beat in beats:
            validate("heartbeat", beat)
    finally:
        recorder.close()
        demo.close()


@pytest.mark.slow
def test_broker_stopped_and_restarted_mid_run_loses_nothing(fresh_broker: MosquittoBroker,
                                                            tmp_path: Path) -> None:
    demo = DemoStation(pumps=2, broker=fresh_broker, workdir=tmp_path / "demo", quiet=True)
    try:
        demo.start()
        start_totals = {n: demo.board.totaliser_ml(n - 1) for n in demo.products}
        script = script_customers(demo.registry, demo.products, 16, demo.token)
        first, second = script[:8], script[8:]
        demo.serve(first, timeout_s=60)
        fresh_broker.stop()  # the station's link to headquarters goes away

        # Offline is normal: scans are still decided locally and fills journaled.
        outcomes = demo.serve(second, timeout_s=60)
        assert any(o.transaction is not None for o in outcomes), "no fill completed while offline"
        for outcome in outcomes:
            assert outcome.decision is not None
            got = "ok" if outcome.decision["ok"] else outcome.decision["reason"]
            assert got == outcome.customer.expect
        assert outbox_depth(demo.journal_path) > 0, "offline transactions must wait in the outbox"

        fresh_broker.start()  # same port: the link returns
        demo.wait_delivered(40)
        assert_reconciled(demo, start_totals)
    finally:
        demo.close()
