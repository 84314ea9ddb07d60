"""The dashboard's list of recent sales follows the payment: a card sale shows "unpaid"
while the terminal works and "paid" once it settles, also after an agent restart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agent import topics
from agent.cli.demo import Customer, DemoStation, Outcome, _pick, serve_customers
from agent.config import EdcConfig, StationConfig, Timeouts
from agent.station import Station
from simulators.broker import MosquittoBroker
from tests.helpers import MqttRecorder, wait_until

pytestmark = pytest.mark.integration


class PayStation(DemoStation):
    def config(self) -> StationConfig:
        assert self.edc is not None
        return dataclasses.replace(
            super().config(), timeouts=Timeouts(scan_to_nozzle_s=1.5, no_flow_s=5, duplicate_scan_s=0.2),
            edc=EdcConfig(self.edc.path, ack_timeout_s=0.3, max_retries=3, response_timeout_s=1.5))


def _listed(station: Station, tx_id: str) -> dict[str, object]:
    return next(item["payment"] for item in station.live.recent if item["tx_id"] == tx_id)


def test_recent_list_follows_the_card_payment(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    demo = PayStation(pumps=1, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, edc=True, flow_lps=20.0)
    try:
        demo.start()
        station = demo.station
        assert station is not None
        car = _pick(demo.registry, set(), "private_car", 0x01)
        outcomes: list[Outcome] = []
        serve_customers([Customer("card", 1, demo.token(car.vehicle_id), 5_000, "ok", "card", ("approve",))],
                        demo.scanners[1], demo.board, 0, demo.tracker, outcomes, demo._stop, station, demo.edc)
        tx = outcomes[0].transaction
        assert tx is not None and outcomes[0].receipt is not None
        assert wait_until(lambda: _listed(station, tx["tx_id"]) == {"method": "card", "status": "paid"}, 5), \
            _listed(station, tx["tx_id"])
        # what the page receives (retained): the same
        recorder = MqttRecorder(mosquitto, [topics.recent(station.config.station_id)], "test-recent")
        try:
            assert wait_until(lambda: bool(recorder.messages), 5)
            listed = json.loads(recorder.messages[-1][1])["transactions"]
            assert next(t["payment"] for t in listed if t["tx_id"] == tx["tx_id"])["status"] == "paid"
        finally:
            recorder.close()
    finally:
        demo.close()
    # after a restart the list is seeded from the journal, with the payment's state
    again = PayStation(pumps=1, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, edc=True)
    try:
        again.start()
        assert again.station is not None
        assert _listed(again.station, tx["tx_id"]) == {"method": "card", "status": "paid"}
    finally:
        again.close()
