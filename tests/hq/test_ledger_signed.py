"""Stations' reservations and sync requests signed with the station key, on a real ledger
process (mosquitto, PostgreSQL): a verifying ledger takes only those its station signed
recently; a replay can neither reopen a closed fill nor make a restarted station's feed
look fresh (the sync answer echoes the request's nonce)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.national_usage import NationalUsage, reservation
from agent.trust import root as trust
from agent.trust.root import Root, TrustStore
from agent.trust.tx_sign import sign_record
from hq.ledger import LedgerStore
from hq.ledger_node import MAX_CLOCK_GAP, LedgerNode
from hq.tx_verify import StationKeys, TxSignatureError
from hq.usage_feed import UsageFeed
from simulators.broker import MosquittoBroker
from simulators.txgen import sim_station_key, sim_station_keys
from tests.helpers import MqttRecorder, wait_until

pytestmark = pytest.mark.integration

DAY = "2026-11-30"
A, B = "34.401.01", "34.401.02"
VID = 18_000_000_000_000_000_777
KEY = Ed25519PrivateKey.generate()  # headquarters' usage (and ack) key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def opening(tx_id: str, station: str = A, signer: str | None = A, at: dt.datetime | None = None,
            op: str = "open", ml: int = 40_000) -> bytes:
    key = sim_station_key(signer) if signer is not None else None
    return reservation(station, tx_id, VID, "solar", DAY, ml if op == "open" else 0, op, at or now(), key)


def station_view(station: str, clock: Clock | None = None) -> NationalUsage:
    far = now() + dt.timedelta(days=30)
    body = trust.root_body(1, far, {r: [KEY.public_key()] for r in trust.ALL_ROLES}, {})
    return NationalUsage(station, TrustStore(Root.from_signed(body)), clock or Clock())


class Ledger:
    """One verifying ledger process, a sender and a recorder of its answers, on their own group."""

    def __init__(self, broker: MosquittoBroker, dsn: str) -> None:
        tag = uuid.uuid4().hex[:6]
        self.node = LedgerNode(broker.host, broker.port, dsn, [KEY], name=f"signed-{tag}", group=f"g{tag}",
                               tick_s=0.2, verifier=sim_station_keys([A, B]).verify).start()
        self.recorder = MqttRecorder(broker, ["hq/v1/usage/#"], f"rec-{tag}")
        self.sender = MqttRecorder(broker, [], f"send-{tag}")
        self.store = LedgerStore(dsn)
        self.handled = 0  # messages whose batch the worker has finished (stored and committed)
        handle = self.node.handle

        def counted(batch: list[tuple[str, bytes]]) -> None:
            handle(batch)
            self.handled += len(batch)

        self.node.handle = counted  # type: ignore[method-assign]

    def send(self, topic: str, *payloads: bytes) -> None:
        before = self.handled
        for payload in payloads:
            self.sender.client.publish(topic, payload, qos=1).wait_for_publish(5)
        assert wait_until(lambda: self.handled >= before + len(payloads), 10)

    def reservations(self) -> dict[str, bool]:
        rows = self.store.db.execute("SELECT tx_id, open FROM reservation").fetchall()
        return {str(tx): bool(is_open) for tx, is_open in rows}

    def answers(self, station: str) -> list[bytes]:
        return [m for _, m in self.recorder.raw(lambda t: t == topics.usage(station))]

    def close(self) -> None:
        self.recorder.close()
        self.sender.close()
        self.store.close()
        self.node.close()


@pytest.fixture
def ledger(mosquitto: MosquittoBroker, pg_dsn: str) -> Iterator[Ledger]:
    made = Ledger(mosquitto, pg_dsn)
    yield made
    made.close()


def test_a_verifying_ledger_takes_only_reservations_its_station_signed_recently(ledger: Ledger) -> None:
    signed = opening("ok")
    tampered = json.loads(opening("tampered"))
    tampered["ml"] = 60_000  # altered after signing
    ledger.send(topics.reserve(A), opening("unsigned", signer=None), opening("forged", signer=B),
                json.dumps(tampered).encode(), opening("old", at=now() - MAX_CLOCK_GAP - dt.timedelta(minutes=1)),
                opening("ahead", at=now() + MAX_CLOCK_GAP + dt.timedelta(minutes=1)), signed)
    assert ledger.reservations() == {"ok": True}
    assert ledger.node.stats.rejected == 5 and ledger.node.stats.reservations == 1
    row = ledger.store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)]
    assert [(s, ml) for s, ml, _ in row.reservations] == [(A, 40_000)]


def test_a_replayed_open_cannot_reopen_a_closed_fill(ledger: Ledger) -> None:
    first = opening("fill-1")
    ledger.send(topics.reserve(A), first, opening("fill-1", op="close"))
    ledger.send(topics.reserve(A), first)  # captured and replayed within the time bound
    assert ledger.reservations() == {"fill-1": False}
    second = opening("fill-2")
    ledger.send(topics.reserve(A), second)
    assert ledger.reservations()["fill-2"] is True
    record = {"schema": "spbu.tx/1", "tx_id": "fill-2", "station": A, "vehicle_id": str(VID), "product": "solar",
              "dispensed_ml": 39_000, "quota": {"day": DAY, "limit_ml": 60_000, "before_ml": 0, "after_ml": 39_000}}
    ledger.send(topics.tx(A), json.dumps(sign_record(record, sim_station_key(A))).encode())
    ledger.send(topics.reserve(A), second)  # its transaction closed it: a replay changes nothing
    assert ledger.reservations() == {"fill-1": False, "fill-2": False}
    assert ledger.store.snapshot([(VID, "solar", DAY)])[(VID, "solar", DAY)].reservations == []


def sync_request(view: NationalUsage, signer: str | None, at: dt.datetime | None = None) -> bytes:
    key = sim_station_key(signer) if signer is not None else None
    return view.sync_request(DAY, "WIB", at or now(), key)


def test_a_verifying_ledger_answers_only_signed_recent_sync_requests_echoing_their_nonce(ledger: Ledger) -> None:
    view = station_view(B)
    refused = [sync_request(view, None), sync_request(view, A),
               sync_request(view, B, now() - MAX_CLOCK_GAP - dt.timedelta(minutes=1))]
    good = sync_request(view, B)
    ledger.send(topics.usage_sync(B), *refused, good)
    assert wait_until(lambda: ledger.node.stats.syncs >= 1 and len(ledger.answers(B)) >= 1, 10)
    assert ledger.node.stats.rejected == 3 and ledger.node.stats.syncs == 1
    nonces = {trust.parse_envelope(m)[0].get("nonce") for m in ledger.answers(B)}
    assert nonces == {json.loads(good)["nonce"]}
    for m in ledger.answers(B):
        view.offer(m, DAY)
    assert view.synced and not view.stale(60)


def _answer(ledger: Ledger, view: NationalUsage) -> list[bytes]:
    before = len(ledger.answers(B))
    ledger.send(topics.usage_sync(B), sync_request(view, B))
    assert wait_until(lambda: len(ledger.answers(B)) > before, 10)
    return ledger.answers(B)[before:]


def test_after_a_restart_a_replayed_sync_answer_or_older_batch_does_not_make_the_feed_fresh(ledger: Ledger) -> None:
    clock = Clock()
    before = station_view(B, clock)
    old_answer = _answer(ledger, before)
    for m in old_answer:
        before.offer(m, DAY)
    assert before.synced  # the control: a real answer to its own request syncs it
    assert wait_until(lambda: any(t == topics.USAGE_TICK for t, _ in ledger.recorder.raw()), 5)
    old_tick = next(m for t, m in ledger.recorder.raw() if t == topics.USAGE_TICK)
    unasked = UsageFeed([KEY], publisher="another-ledger").sync_answer(B, DAY, {})[0][1]  # signed, no nonce

    after = station_view(B, clock)  # the restart: the sequence guard and nonces are gone
    after.sync_request(DAY, "WIB", now())  # asked again (its answer is late)
    for m in [*old_answer, unasked]:
        after.offer(m, DAY)  # accepted as data (merged by maximum) ...
    assert not after.synced and after.stale(60)  # ... but it answers no request of this start
    for m in _answer(ledger, after):
        after.offer(m, DAY)
    assert after.synced and not after.stale(60)
    clock.now += 50
    after.offer(old_tick, DAY)  # signed before the answer: taken in, but it refreshes nothing
    assert after.age_s() == pytest.approx(50)
    fresh: dict[str, Any] = {}

    def new_tick() -> bool:
        fresh.update({"m": next((m for t, m in reversed(ledger.recorder.raw()) if t == topics.USAGE_TICK), b"")})
        return fresh["m"] not in (b"", old_tick)

    assert wait_until(new_tick, 5)
    after.offer(fresh["m"], DAY)
    assert after.age_s() == 0.0


def test_station_signatures_are_bound_to_the_kind_of_message() -> None:
    keys = sim_station_keys([A])
    body = json.loads(opening("t1"))
    keys.verify(body, b"spbu/reserve\n")
    with pytest.raises(TxSignatureError):
        keys.verify(body)  # a signed reservation does not pass for a transaction record
    with pytest.raises(TxSignatureError):
        keys.verify(body, b"spbu/usage_sync\n")
    request = json.loads(station_view(A).sync_request(DAY, "WIB", now(), sim_station_key(A)))
    keys.verify(request, b"spbu/usage_sync\n")
    assert isinstance(keys, StationKeys)
