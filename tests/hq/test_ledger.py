"""Headquarters' national usage ledger on a real PostgreSQL (hq/ledger.py, hq/usage_feed.py,
hq/ledger_node.py): idempotent by transaction id across processes, reservations that cannot
come back once closed, feeds tailored per station and verified by the station's own code."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.national_usage import NationalUsage, UsageRefused
from agent.trust import root as trust
from agent.trust.acks import verify_ack
from agent.trust.root import Root, TrustStore
from agent.trust.signing import key_id
from hq.ledger import LedgerStore, Reservation
from hq.ledger_node import LedgerNode
from hq.usage_feed import UsageFeed, tailored
from simulators.broker import MosquittoBroker
from tests.helpers import MqttRecorder

DAY = "2026-11-30"
VID = 18_000_000_000_000_000_001  # above 2**63: stored as a negative bigint and back


def record(station: str, ml: int, vid: int = VID, tx_id: str | None = None, product: str = "solar",
           day: str = DAY, limit_ml: int = 60_000) -> dict[str, Any]:
    return {"schema": "spbu.tx/1", "tx_id": tx_id or f"{station}-{uuid.uuid4().hex[:10]}", "station": station,
            "vehicle_id": str(vid), "product": product, "dispensed_ml": ml,
            "quota": {"day": day, "limit_ml": limit_ml, "before_ml": 0, "after_ml": ml}}


def test_a_transaction_counts_once_whichever_process_stores_it(pg_dsn: str) -> None:
    stores = [LedgerStore(pg_dsn) for _ in range(4)]
    records = [record(f"34.401.0{i % 3 + 1}", 1_000 * (i + 1)) for i in range(30)]
    try:
        # Every process gets every record, concurrently, in its own order.
        def work(store: LedgerStore, index: int) -> None:
            mine = records[index:] + records[:index]
            for start in range(0, len(mine), 7):
                store.store(mine[start:start + 7], f"c{index}")

        threads = [threading.Thread(target=work, args=(s, i)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert stores[0].count() == 30
        by_station = stores[0].used_by_station(VID, "solar", DAY)
        expected: dict[str, int] = {}
        for r in records:
            expected[r["station"]] = expected.get(r["station"], 0) + r["dispensed_ml"]
        assert by_station == expected
        # Over the limit across stations: one alert, as before.
        assert [a.vehicle_id for a in stores[0].alerts()] == [str(VID)]
    finally:
        for s in stores:
            s.close()


def test_a_reservation_closed_before_it_opened_stays_closed(pg_dsn: str) -> None:
    store = LedgerStore(pg_dsn)
    try:
        close = Reservation("34.401.02", "tx-1", VID, "solar", DAY, 0, open=False)
        opening = Reservation("34.401.02", "tx-1", VID, "solar", DAY, 60_000, open=True)
        store.reserve([close])
        store.reserve([opening])
        assert store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)].reservations == []
        store.reserve([Reservation("34.401.03", "tx-2", VID, "solar", DAY, 20_000, open=True)])
        row = store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)]
        assert [(s, ml) for s, ml, _ in row.reservations] == [("34.401.03", 20_000)]
        store.store([record("34.401.03", 19_500, tx_id="tx-2")], "c")  # its transaction closes it
        row = store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)]
        assert row.reservations == [] and row.used == {"34.401.03": 19_500}
    finally:
        store.close()


def test_feed_leaves_out_the_stations_own_and_later_fills(pg_dsn: str) -> None:
    store = LedgerStore(pg_dsn)
    try:
        store.store([record("34.401.01", 20_000)], "c")
        store.reserve([Reservation("34.401.02", "a", VID, "solar", DAY, 40_000, open=True),
                       Reservation("34.401.03", "b", VID, "solar", DAY, 40_000, open=True)])
        row = store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)]
        assert tailored(row, "34.401.01") == ([], [["34.401.02", 40_000], ["34.401.03", 40_000]])
        # The earlier fill carries on: it hears nothing of the later one...
        assert tailored(row, "34.401.02") == ([["34.401.01", 20_000]], [])
        # ...and the later one learns of the earlier one and yields.
        assert tailored(row, "34.401.03") == ([["34.401.01", 20_000]], [["34.401.02", 40_000]])
    finally:
        store.close()


def test_a_reconnecting_station_gets_its_areas_usage(pg_dsn: str) -> None:
    store = LedgerStore(pg_dsn)
    try:
        store.register({"34.401.01": "WIB", "34.401.02": "WIB", "35.100.01": "WITA"})
        store.store([record("34.401.02", 10_000, vid=5), record("35.100.01", 5_000, vid=6)], "c")
        assert store.area_keys("34.401", DAY, None) == [(5, "solar", DAY)]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
        assert store.area_keys("34.401", DAY, later) == []
        assert store.stations_in(["34.401"]) == {"34.401": ["34.401.01", "34.401.02"]}
    finally:
        store.close()


def test_two_processes_opening_one_vehicle_at_once_tell_the_one_that_committed_second(pg_dsn: str) -> None:
    """A copied QR opened at two stations, each reservation taken by another ledger process:
    the one that drew its sequence first but committed second must still be told of the other
    (revisions are drawn holding the vehicle-day's row, so they follow the commit order)."""
    vid = 17_000_000_000_000_000_000 + uuid.uuid4().int % 1_000_000
    first, second = LedgerStore(pg_dsn), LedgerStore(pg_dsn)
    paused, go = threading.Event(), threading.Event()
    bump = second._bump

    def slow_bump(limits: dict[tuple[int, str, str], int]) -> None:
        paused.set()  # its reservation row is written; its commit waits
        go.wait(10)
        bump(limits)

    second._bump = slow_bump  # type: ignore[method-assign]
    late = threading.Thread(target=second.reserve,
                            args=([Reservation("34.401.02", f"b-{vid}", vid, "solar", DAY, 60_000, True)],))
    try:
        late.start()
        assert paused.wait(10)
        first.reserve([Reservation("34.402.01", f"a-{vid}", vid, "solar", DAY, 60_000, True)])  # commits first
        go.set()
        late.join(10)
        row = first.snapshot([(vid, "solar", DAY)])[(vid, "solar", DAY)]
        assert tailored(row, "34.401.02") == ([], [["34.402.01", 60_000]])  # told: it yields
        assert tailored(row, "34.402.01") is None  # the first carries on
    finally:
        go.set()
        first.close()
        second.close()


def station_view(station: str, key: Ed25519PrivateKey) -> NationalUsage:
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    body = trust.root_body(1, far, {r: [key.public_key()] for r in trust.ALL_ROLES}, {})
    return NationalUsage(station, TrustStore(Root.from_signed(body)))


def test_feed_batches_verify_at_the_station(pg_dsn: str) -> None:
    key = Ed25519PrivateKey.generate()
    store = LedgerStore(pg_dsn)
    try:
        store.register({"34.401.01": "WIB", "34.401.02": "WIB"})
        result = store.store([record("34.401.01", 45_000)], "c")
        feed = UsageFeed([key])
        messages = feed.updates(store.snapshot(result.touched), store.stations_in(["34.401"]))
        assert [t for t, _ in messages] == [topics.usage("34.401.02")]  # not back to 34.401.01
        view = station_view("34.401.02", key)
        view.offer(messages[0][1], DAY)
        assert view.elsewhere(VID, "solar", DAY, 60, None).used_ml == 45_000
    finally:
        store.close()


def test_a_restarted_publisher_goes_on_above_its_old_batches_which_stay_replays(pg_dsn: str) -> None:
    """The feed's sequences live in PostgreSQL: a ledger process restarted under its name
    keeps its publisher id, its new batches are taken, and a batch signed before the restart
    is still refused as a replay once a newer one has been taken."""
    key = Ed25519PrivateKey.generate()
    publisher = f"n-{uuid.uuid4().hex[:6]}"
    store = LedgerStore(pg_dsn)
    try:
        store.register({"34.401.01": "WIB", "34.401.02": "WIB"})
        touched = store.store([record("34.401.01", 20_000)], "c").touched
        areas = store.stations_in(["34.401"])
        before = UsageFeed([key], publisher=publisher, seq_source=store.reserve_seqs)
        old = [before.updates(store.snapshot(touched), areas)[0][1] for _ in range(3)]
        old_tick = before.tick()[1]
        after = UsageFeed([key], publisher=publisher, seq_source=store.reserve_seqs)  # the restart
        new = after.updates(store.snapshot(touched), areas)[0][1]
        view = station_view("34.401.02", key)
        view.offer(old[0], DAY)
        view.offer(old_tick, DAY)
        view.offer(new, DAY)  # same publisher, above everything before the restart
        view.offer(after.tick()[1], DAY)
        for replay in (old[1], old[2], old_tick):
            with pytest.raises(UsageRefused, match="replayed"):
                view.offer(replay, DAY)
    finally:
        store.close()


@pytest.mark.integration
def test_ledger_processes_share_the_load_without_double_counting(mosquitto: MosquittoBroker, pg_dsn: str) -> None:
    key = Ed25519PrivateKey.generate()
    group = f"g{uuid.uuid4().hex[:6]}"
    nodes = [LedgerNode(mosquitto.host, mosquitto.port, pg_dsn, [key], name=f"n{i}", group=group).start()
             for i in range(2)]
    # The two nodes' shared subscriptions use their own group, so other tests' brokers' traffic stays out.
    recorder = MqttRecorder(mosquitto, ["hq/v1/ack/#", "hq/v1/usage/#"], f"rec-{group}")
    sender = MqttRecorder(mosquitto, [], f"send-{group}")
    try:
        view = station_view("34.401.02", key)  # unsigned: these nodes check no station signature
        sync = view.sync_request(DAY, "WIB", dt.datetime.now(dt.UTC))
        sender.client.publish(topics.usage_sync("34.401.02"), sync, qos=1).wait_for_publish(5)
        time.sleep(0.5)
        records = [record("34.401.01", 10_000, tx_id=f"t{i}") for i in range(20)]
        for _ in range(2):  # everything twice: resent after a lost acknowledgement
            for r in records:
                sender.client.publish(topics.tx("34.401.01"), json.dumps(r), qos=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(n.stored + n.duplicates for n in nodes) < 40:
            time.sleep(0.1)
        assert sum(n.stored for n in nodes) == 20 and all(n.received for n in nodes)
        assert nodes[0].store.used_by_station(VID, "solar", DAY) == {"34.401.01": 200_000}
        time.sleep(0.5)
        ring = {key_id(key.public_key()): key.public_key()}  # acknowledgements are signed (agent/trust/acks.py)
        acked = {i for _, m in recorder.raw(lambda t: t == topics.ack("34.401.01"))
                 for i in verify_ack(m, "34.401.01", ring).ids}
        assert acked == {r["tx_id"] for r in records}
        for _, payload in recorder.raw(lambda t: t == topics.usage("34.401.02")):
            view.offer(payload, DAY)
        assert view.elsewhere(VID, "solar", DAY, 60, None).used_ml == 200_000
        assert view.synced
    finally:
        recorder.close()
        sender.close()
        for n in nodes:
            n.close()
