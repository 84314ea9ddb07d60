"""Headquarters' collector: shared subscription, exactly-once storage, acknowledgements after
the commit, and cross-station quota reconciliation. Real mosquitto, real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import topics
from agent.trust.acks import verify_ack
from agent.trust.signing import key_id
from hq.collector import Collector, CollectorStore, RecordError, parse_record
from simulators.broker import MosquittoBroker
from simulators.txgen import sim_ack_key, sim_station_keys, synthetic_tx
from tests.conftest import validate
from tests.helpers import MqttRecorder, wait_until

STATIONS = ("34.401.01", "34.401.02")
ACK_KEY = sim_ack_key()
ACK_RING = {key_id(ACK_KEY.public_key()): ACK_KEY.public_key()}
SIGNED: dict[str, Any] = {"ack_key": ACK_KEY, "verifier": sim_station_keys(STATIONS).verify}


class Station(MqttRecorder):
    """A bare MQTT client standing in for stations: publishes records, collects acks."""

    def __init__(self, broker: MosquittoBroker) -> None:
        super().__init__(broker, ["hq/v1/ack/#"], "test-stations", max_inflight=200)

    @property
    def acks(self) -> list[dict[str, Any]]:
        """Each acknowledgement's envelope, verified, with its topic and signed ids."""
        found = []
        for topic, envelope in self.received():
            ack = verify_ack(json.dumps(envelope).encode(), topic.rsplit("/", 1)[1], ACK_RING)
            found.append({"topic": topic, "ids": list(ack.ids), "envelope": envelope})
        return found

    def acked(self) -> dict[str, str]:
        return {i: a["topic"] for a in self.acks for i in a["ids"]}

    def publish(self, record: dict[str, Any]) -> None:
        self.client.publish(topics.tx(record["station"]), json.dumps(record), qos=1).wait_for_publish(5)


@pytest.mark.integration
def test_two_collectors_share_the_subscription_and_store_each_transaction_once(
        mosquitto: MosquittoBroker, pg_dsn: str) -> None:
    db = pg_dsn
    first = Collector(mosquitto.host, mosquitto.port, db, name="c1", group="t-two", **SIGNED).start()
    second = Collector(mosquitto.host, mosquitto.port, db, name="c2", group="t-two", **SIGNED).start()
    stations = Station(mosquitto)
    try:
        records = [synthetic_tx(STATIONS[i % 2], i, vehicle_id=1000 + i, dispensed_ml=20_000) for i in range(1, 301)]
        for record in records:
            stations.publish(record)
        # A station that lost its acks resends: every record a second time, and some a third.
        for record in records + records[::7]:
            stations.publish(record)
        ids = {r["tx_id"] for r in records}
        sent = 2 * len(records) + len(records[::7])
        assert wait_until(lambda: set(stations.acked()) == ids, timeout_s=20)
        assert wait_until(lambda: first.stored + first.duplicates + second.stored + second.duplicates == sent, 20)
        store = CollectorStore(db)
        try:
            assert store.tx_ids() == sorted(ids)
            shares = store.by_collector()
        finally:
            store.close()
        assert set(shares) == {"c1", "c2"}, f"the load was not shared: {shares}"
        assert first.duplicates + second.duplicates == len(records) + len(records[::7])
        assert first.received + second.received == sent
        for record in records:  # each station hears about its own transactions only
            assert stations.acked()[record["tx_id"]] == topics.ack(record["station"])
        for ack in stations.acks:
            validate("ack", ack["envelope"])
    finally:
        stations.close()
        first.close()
        second.close()


@pytest.mark.integration
def test_vehicle_over_quota_across_offline_stations_raises_an_alert(
        mosquitto: MosquittoBroker, pg_dsn: str) -> None:
    alerts: list[Any] = []
    collector = Collector(mosquitto.host, mosquitto.port, pg_dsn, group="t-alert",
                          on_alert=alerts.append, **SIGNED).start()
    stations = Station(mosquitto)
    try:
        # Vehicle 7 buys 40 L at each of two stations the same local day (limit 60 L);
        # vehicle 8 buys 30 L at each: within quota; vehicle 9 buys 40 L on two days.
        buys = [synthetic_tx(STATIONS[0], 1, 7, 40_000), synthetic_tx(STATIONS[1], 1, 7, 40_000),
                synthetic_tx(STATIONS[0], 2, 8, 30_000), synthetic_tx(STATIONS[1], 2, 8, 30_000),
                synthetic_tx(STATIONS[0], 3, 9, 40_000), synthetic_tx(STATIONS[1], 3, 9, 40_000, day="2026-01-06")]
        for record in buys:
            validate("tx", record)
            stations.publish(record)
        assert wait_until(lambda: len(stations.acked()) == len(buys), timeout_s=10)
        assert [(a.vehicle_id, a.total_ml, a.limit_ml, a.stations) for a in collector.store.alerts()] == [
            ("7", 80_000, 60_000, STATIONS)]
        assert len(alerts) == 1 and alerts[0].day == "2026-01-05"
    finally:
        stations.close()
        collector.close()


def test_store_dedupes_and_reconciles_without_a_broker(pg_dsn: str) -> None:
    store = CollectorStore(pg_dsn)
    try:
        a = synthetic_tx(STATIONS[0], 1, 5, 50_000)
        b = synthetic_tx(STATIONS[1], 1, 5, 20_000)
        assert store.store([a], "x").stored == 1
        again = store.store([a, b], "y")
        assert (again.stored, again.duplicates) == (1, 1)
        assert [x.total_ml for x in again.alerts] == [70_000]
        assert store.store([a, b], "y").alerts == []  # nothing new: no second alert
        assert store.count() == 2
    finally:
        store.close()


def test_records_with_the_wrong_station_or_shape_are_refused() -> None:
    good = synthetic_tx(STATIONS[0], 1, 5, 1000)
    assert parse_record(topics.tx(STATIONS[0]), json.dumps(good).encode())["tx_id"] == good["tx_id"]
    with pytest.raises(RecordError, match="station"):
        parse_record(topics.tx(STATIONS[1]), json.dumps(good).encode())
    with pytest.raises(RecordError):
        parse_record(topics.tx(STATIONS[0]), json.dumps({**good, "quota": None}).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_record_parser_never_crashes_on_garbage(payload: bytes) -> None:
    with contextlib.suppress(RecordError):
        parse_record(topics.tx(STATIONS[0]), payload)
