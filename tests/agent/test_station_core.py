"""Transaction core behaviour inside a running station (real broker, ptys, journal):
pump state transitions, one session per vehicle, and a wall clock that jumps back to 1970."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

import agent.station
from agent.cli.demo import Customer, DemoStation, Outcome, serve_customers
from simulators.broker import MosquittoBroker

pytestmark = pytest.mark.integration


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.items.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e["type"] == kind]


def serve(demo: DemoStation, customers: list[Customer]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    serve_customers(customers, demo.scanners[1], demo.board, 0, demo.tracker, outcomes, threading.Event())
    return outcomes


def test_states_quota_and_a_clock_that_jumps_back(mosquitto: MosquittoBroker, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True)
    events = Events()
    try:
        demo.start()
        assert demo.station is not None
        demo.station.listeners.append(events)
        bike = next(e for e in demo.registry if e.category == "motorcycle" and e.status == "active")
        token = demo.token(bike.vehicle_id)

        first = serve(demo, [Customer("fill", 1, token, 30_000, "ok")])
        assert first[0].transaction is not None
        assert first[0].transaction["end_reason"] == "preset_reached"  # 10 L motorcycle limit
        states = [e["state"] for e in events.of("pump_state") if e["pump"] == 1]
        assert states[:3] == ["authorised", "fuelling", "idle"]

        # The Pi loses its clock (no RTC, NTP gone): it reads 1970. Quota must not reset.
        monkeypatch.setattr(agent.station, "utc_now",
                            lambda: dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=dt.UTC))
        again = serve(demo, [Customer("again", 1, token, 5_000, "quota_exhausted")])
        assert again[0].decision is not None
        assert again[0].decision["reason"] == "quota_exhausted"
        alerts = [e["alert"] for e in events.of("alert")]
        assert "clock_untrusted" in alerts
        assert any(line.startswith("PERINGATAN") for line in demo.lines)

        # A different vehicle still fuels, on the last trusted day, flagged in its record.
        car = next(e for e in demo.registry if e.category == "private_car" and e.products == 0x01
                   and e.status == "active")
        other = serve(demo, [Customer("other", 1, demo.token(car.vehicle_id), 5_000, "ok")])
        assert other[0].transaction is not None
        demo.wait_delivered(10)
        db = sqlite3.connect(f"file:{demo.journal_path}?mode=ro", uri=True)
        days = {row[0] for row in db.execute("SELECT quota_day FROM sessions")}
        db.close()
        assert len(days) == 1 and "1970-01-01" not in days
        assert demo.hq is not None
        records = {t["tx_id"]: t for t in demo.hq.transactions()}
        assert records[other[0].transaction["tx_id"]]["times"]["clock_trusted"] is False
    finally:
        demo.close()


def test_second_scan_of_a_vehicle_fuelling_elsewhere_is_refused(mosquitto: MosquittoBroker,
                                                                 tmp_path: Path) -> None:
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True)
    try:
        demo.start()
        assert demo.station is not None
        bus = next(e for e in demo.registry if e.category == "public_passenger_4w" and e.status == "active")
        token = demo.token(bus.vehicle_id)
        demo.scanners[1].scan(token)
        granted = demo.tracker.next(1, "decision", 5)
        assert granted is not None and granted["ok"] is True
        demo.scanners[2].scan(token)
        refused = demo.tracker.next(2, "decision", 5)
        assert refused is not None and refused["reason"] == "vehicle_busy"
        assert not demo.board.relay_closed(1)
        assert any("sedang mengisi di pompa lain" in line for line in demo.lines)
    finally:
        demo.close()
