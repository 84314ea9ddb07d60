"""The station's view of usage elsewhere (agent/national_usage.py): signed batches merged by
maximum, order-free and idempotent; bad batches refused with a reason and nothing changed;
freshness and the offline share in the eligibility decision."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.eligibility import OFFLINE_SHARE_USED, QUOTA_EXHAUSTED, QUOTA_USED_ELSEWHERE, decide
from agent.journal import SessionRow
from agent.national_usage import Elsewhere, NationalUsage, UsageRefused
from agent.trust import root as trust
from agent.trust.documents import QuotaPolicy
from agent.trust.root import Root, TrustStore
from agent.usage_link import fill_cap

ME = "34.401.01"
DAY = "2026-11-30"
VID = 123456789012345678


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store_for(keys: dict[str, Ed25519PrivateKey], with_usage_role: bool = True) -> TrustStore:
    role_keys = {r: [keys.get(r, keys["policy"]).public_key()] for r in trust.ROLES}
    if with_usage_role:
        role_keys["usage"] = [keys["usage"].public_key()]
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    body = trust.root_body(1, far, role_keys, {})
    return TrustStore(Root.from_signed(body))


@pytest.fixture
def keys() -> dict[str, Ed25519PrivateKey]:
    return {"policy": Ed25519PrivateKey.generate(), "usage": Ed25519PrivateKey.generate()}


class Feed:
    """Headquarters' side in miniature: numbered, signed batches."""

    def __init__(self, key: Ed25519PrivateKey, publisher: str = "ledger-a") -> None:
        self.key, self.publisher, self.seq = key, publisher, 0

    def batch(self, entries: list[Any], kind: str = "update", day: str = DAY, station: str = ME,
              seq: int | None = None, last: bool = True, **extra: Any) -> bytes:
        self.seq = seq if seq is not None else self.seq + 1
        body = {"_type": "usage", "kind": kind, "station": station, "day": day, "seq": self.seq,
                "publisher": self.publisher, "issued": dt.datetime.now(dt.UTC).isoformat(),
                "last": last, "entries": entries, **extra}
        return trust.sign(body, [self.key])


def entry(used: dict[str, int], rev: int = 1, reserved: dict[str, int] | None = None,
          vid: int = VID, product: str = "solar") -> list[Any]:
    return [str(vid), product, rev, [[s, ml] for s, ml in used.items()],
            [[s, ml] for s, ml in (reserved or {}).items()]]


def ask(usage: NationalUsage) -> str:
    """A sync request as the station sends it; returns the nonce the answer must echo."""
    return str(json.loads(usage.sync_request(DAY, "WIB", dt.datetime.now(dt.UTC)))["nonce"])


def synced(usage: NationalUsage, feed: Feed) -> None:
    usage.offer(feed.batch([], kind="sync", nonce=ask(usage)), DAY)


def test_counters_merge_by_maximum_whatever_the_order_and_repeats(keys: dict[str, Ed25519PrivateKey]) -> None:
    clock = Clock()
    usage = NationalUsage(ME, store_for(keys), clock)
    a, b = Feed(keys["usage"], "ledger-a"), Feed(keys["usage"], "ledger-b")
    synced(usage, a)
    usage.offer(a.batch([entry({"34.401.02": 30_000}, rev=5)]), DAY)
    # An older view from another ledger process arrives later: it cannot lower anything.
    usage.offer(b.batch([entry({"34.401.02": 10_000, "34.401.03": 5_000}, rev=3)]), DAY)
    seen = usage.elsewhere(VID, "solar", DAY, 60, 0.5)
    assert (seen.used_ml, seen.stale) == (35_000, False)
    # A headquarters restart is a new publisher starting at seq 1: still never lower.
    restarted = Feed(keys["usage"], "ledger-a-restarted")
    usage.offer(restarted.batch([entry({"34.401.02": 0}, rev=1)]), DAY)
    assert usage.elsewhere(VID, "solar", DAY, 60, 0.5).used_ml == 35_000


def test_reservations_follow_the_highest_revision(keys: dict[str, Ed25519PrivateKey]) -> None:
    usage = NationalUsage(ME, store_for(keys), Clock())
    feed = Feed(keys["usage"])
    usage.offer(feed.batch([entry({}, rev=7, reserved={"34.401.02": 60_000})]), DAY)
    usage.offer(feed.batch([entry({"34.401.02": 0}, rev=6, reserved={"34.401.02": 1})]), DAY)  # older: ignored
    assert usage.elsewhere(VID, "solar", DAY, 60, None).reserved_ml == 60_000
    usage.offer(feed.batch([entry({"34.401.02": 41_000}, rev=9)]), DAY)  # the fill closed
    seen = usage.elsewhere(VID, "solar", DAY, 60, None)
    assert (seen.used_ml, seen.reserved_ml) == (41_000, 0)


@pytest.mark.parametrize(("case", "check"), [
    ("unsigned", "threshold not met"),
    ("wrong key", "unknown key"),
    ("tampered", "bad signature"),
    ("replayed", "replayed"),
    ("older day", "older day"),
    ("future day", "future day"),
    ("own station", "own station"),
    ("other station", "wrong station"),
    ("absurd ml", "absurd value"),
    ("absurd size", "absurd size"),
    ("not json", "malformed"),
    ("policy type", "wrong type"),
])
def test_bad_batches_are_refused_and_change_nothing(keys: dict[str, Ed25519PrivateKey], case: str,
                                                    check: str) -> None:
    usage = NationalUsage(ME, store_for(keys), Clock())
    feed = Feed(keys["usage"])
    good = feed.batch([entry({"34.401.02": 20_000}, rev=2)])
    usage.offer(good, DAY)
    other = {"34.401.02": 50_000}
    data = {
        "unsigned": b'{"signed":{"_type":"usage"},"signatures":[]}',
        "wrong key": Feed(Ed25519PrivateKey.generate()).batch([entry(other, rev=3)]),
        "tampered": feed.batch([entry(other, rev=3)]).replace(b"50000", b"90000"),
        "replayed": good,
        "older day": feed.batch([entry(other, rev=3)], day="2026-11-29"),
        "future day": feed.batch([entry(other, rev=3)], day="2026-12-01"),
        "own station": feed.batch([entry({ME: 50_000}, rev=3)]),
        "other station": feed.batch([entry(other, rev=3)], station="34.401.02"),
        "absurd ml": feed.batch([entry({"34.401.02": 10**9}, rev=3)]),
        "absurd size": feed.batch([entry(other, rev=3)] * 20_001),
        "not json": b"\xff{",
        "policy type": trust.sign({"_type": "policy", "station": ME}, [keys["usage"]]),
    }[case]
    with pytest.raises(UsageRefused) as refused:
        usage.offer(data, DAY)
    assert refused.value.check == check
    assert usage.elsewhere(VID, "solar", DAY, 60, None).used_ml == 20_000


def test_without_a_usage_role_the_policy_keys_sign_the_feed(keys: dict[str, Ed25519PrivateKey]) -> None:
    usage = NationalUsage(ME, store_for(keys, with_usage_role=False), Clock())
    usage.offer(Feed(keys["policy"]).batch([entry({"34.401.02": 1_000})]), DAY)
    with pytest.raises(UsageRefused):
        usage.offer(Feed(keys["usage"], "x").batch([entry({"34.401.02": 2_000})]), DAY)


def test_freshness_needs_a_sync_after_each_reconnect(keys: dict[str, Ed25519PrivateKey]) -> None:
    clock = Clock()
    usage = NationalUsage(ME, store_for(keys), clock)
    feed = Feed(keys["usage"])
    assert usage.stale(60)  # never synced
    usage.offer(feed.batch([], kind="tick", station="*", day=""), DAY)
    assert usage.stale(60)  # a tick alone does not sync
    synced(usage, feed)
    assert not usage.stale(60)
    clock.now += 61
    assert usage.stale(60)
    usage.offer(feed.batch([], kind="tick", station="*", day="", seq=100), DAY)
    assert not usage.stale(60)
    usage.link_changed(False)
    assert usage.stale(60)  # whatever was missed while down is unknown until the next sync
    assert b'"since":' in usage.sync_request(DAY, "WIB", dt.datetime.now(dt.UTC))


def test_only_an_answer_to_a_request_sent_since_the_last_reconnect_syncs(keys: dict[str, Ed25519PrivateKey]) -> None:
    usage = NationalUsage(ME, store_for(keys), Clock())
    feed = Feed(keys["usage"])
    before = ask(usage)
    usage.link_changed(False)
    usage.link_changed(True)
    usage.offer(feed.batch([entry({"34.401.02": 5_000})], kind="sync", nonce=before), DAY)
    usage.offer(feed.batch([], kind="sync"), DAY)  # no nonce at all
    usage.offer(feed.batch([], kind="sync", nonce="x" * 24), DAY)  # one it never sent
    assert usage.stale(60) and not usage.synced
    assert usage.elsewhere(VID, "solar", DAY, 60, None).used_ml == 5_000  # data is still merged (by maximum)
    usage.offer(feed.batch([], kind="sync", nonce=ask(usage)), DAY)
    assert usage.synced and not usage.stale(60)
    with pytest.raises(UsageRefused, match="malformed"):
        usage.offer(feed.batch([], kind="sync", nonce="short"), DAY)


def policy(share: float | None = 0.5) -> QuotaPolicy:
    now = dt.datetime.now(dt.UTC)
    return QuotaPolicy(1, now, now + dt.timedelta(days=1), {"solar": {"private_car": 60_000}}, {},
                       {"solar": 6800}, 200_000, usage_stale_after_s=60, usage_offline_share=share)


class OneCar:
    version, created = 1, dt.datetime.now(dt.UTC)
    expires = created + dt.timedelta(days=1)

    def lookup(self, vehicle_id: int) -> Any:
        from agent.trust.documents import Vehicle

        return Vehicle(vehicle_id, "private_car", 0x02, "active", "B 1 A")


def test_decision_counts_usage_elsewhere_and_says_so() -> None:
    now = dt.datetime.now(dt.UTC)
    d = decide(VID, "solar", OneCar(), policy(), 0, None, now, None, Elsewhere(40_000, 0))
    assert d.ok and d.preset_ml == 20_000 and d.elsewhere_ml == 40_000 and d.remaining_ml == 20_000
    d = decide(VID, "solar", OneCar(), policy(), 0, None, now, None, Elsewhere(50_000, 10_000))
    assert not d.ok and d.reason == QUOTA_USED_ELSEWHERE
    d = decide(VID, "solar", OneCar(), policy(), 60_000, None, now, None, Elsewhere(10_000, 0))
    assert not d.ok and d.reason == QUOTA_EXHAUSTED  # used up here already


def test_stale_feed_sells_at_most_the_offline_share() -> None:
    now = dt.datetime.now(dt.UTC)
    stale = Elsewhere(0, 0, stale=True, offline_share=0.5)
    d = decide(VID, "solar", OneCar(), policy(), 0, None, now, None, stale)
    assert d.ok and d.preset_ml == 30_000 and d.share_capped
    d = decide(VID, "solar", OneCar(), policy(), 30_000, None, now, None, stale)
    assert not d.ok and d.reason == OFFLINE_SHARE_USED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["34.401.02", "34.401.03", "35.100.01"]),
                          st.integers(0, 200_000), st.integers(1, 50)), max_size=12), st.randoms())
def test_merge_is_order_free(updates: list[tuple[str, int, int]], rnd: Any) -> None:
    keys = {"policy": Ed25519PrivateKey.generate(), "usage": Ed25519PrivateKey.generate()}
    views = []
    for order in (updates, rnd.sample(updates, len(updates))):
        usage = NationalUsage(ME, store_for(keys), Clock())
        feed = Feed(keys["usage"])
        for station, ml, rev in order + order:  # every batch twice: duplicates change nothing
            usage.offer(feed.batch([entry({station: ml}, rev=rev)]), DAY)
        views.append(usage.elsewhere(VID, "solar", DAY, 60, None).used_ml)
    assert views[0] == views[1] == sum(max((ml for s, ml, _ in updates if s == x), default=0)
                                       for x in {s for s, _, _ in updates})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_never_crashes_the_merge(data: bytes) -> None:
    keys = {"policy": Ed25519PrivateKey.generate(), "usage": Ed25519PrivateKey.generate()}
    usage = NationalUsage(ME, store_for(keys), Clock())
    with pytest.raises(UsageRefused):
        usage.offer(data, DAY)


def test_the_station_link_reports_a_refused_batch_and_keeps_selling(keys: dict[str, Ed25519PrivateKey]) -> None:
    from agent.usage_link import UsageLink

    events: list[dict[str, Any]] = []
    published: list[tuple[str, bytes]] = []
    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        published.append((topic, payload))
        return True

    link = UsageLink(ME, "WIB", store_for(keys), publish, events.append, lambda: policy())
    link.on_link(True, DAY, 0.0)
    assert published and published[0][0] == "spbu/v1/34.401.01/usage_sync"
    feed = Feed(keys["usage"])
    nonce = json.loads(published[0][1])["nonce"]
    assert link.on_message(feed.batch([entry({"34.401.02": 25_000})], kind="sync", nonce=nonce),
                           DAY) == {(VID, "solar")}
    assert link.on_message(feed.batch([entry({ME: 99_000}, rev=2)]), DAY) == set()
    assert events[-1]["alert"] == "usage_rejected" and events[-1]["check"] == "own station"
    seen = link.elsewhere(VID, "solar", DAY)
    assert seen is not None and seen.used_ml == 25_000 and not seen.stale


def _session(before_ml: int, preset_ml: int, limit_ml: int = 60_000) -> SessionRow:
    return SessionRow(1, "34.401.01-00000001", 1, VID, "B 1 SIM", "solar", DAY, limit_ml, before_ml, preset_ml,
                      preset_ml, 6800, "fuelling", 0.0)


@pytest.mark.parametrize(("before", "preset", "elsewhere", "cap"), [
    (0, 60_000, None, None),  # no feed: the preset stands
    (0, 30_000, Elsewhere(20_000, 10_000), None),  # 30 L left: the preset still fits
    (0, 60_000, Elsewhere(20_000, 30_000), 10_000),  # reservations elsewhere count as used
    (15_000, 45_000, Elsewhere(0, 40_000), 5_000),  # this station's earlier litres count too
    (0, 60_000, Elsewhere(60_000, 0), 0),  # already taken elsewhere: stop now
    (0, 60_000, Elsewhere(50_000, 40_000), 0),  # never below zero
])
def test_a_fill_in_progress_is_capped_where_the_national_quota_ends(
        before: int, preset: int, elsewhere: Elsewhere | None, cap: int | None) -> None:
    assert fill_cap(_session(before, preset), elsewhere) == cap
