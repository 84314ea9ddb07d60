"""The stated bound on overspend when stations are partitioned (docs/national-quota.md): a
vehicle takes at most quota x (1 + share x k) in a day, k being the stations it visits
while they cannot reach headquarters. Checked over random drives with the station's own
merge (agent/national_usage.py) and decision (agent/eligibility.py); headquarters is a
model that forwards each connected station's counter to every connected station."""

from __future__ import annotations

import datetime as dt
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.eligibility import decide
from agent.national_usage import NationalUsage
from tests.agent.test_national_usage import DAY, VID, Clock, Feed, OneCar, entry, policy, store_for

STATIONS = [f"34.401.0{i}" for i in range(1, 6)]
QUOTA = 60_000
SHARE = 0.5


class Model:
    """Five stations and headquarters' ledger in miniature."""

    def __init__(self, cut: set[int]) -> None:
        keys = {"policy": Ed25519PrivateKey.generate(), "usage": Ed25519PrivateKey.generate()}
        self.feed = Feed(keys["usage"])
        self.clock = Clock()
        self.views = [NationalUsage(s, store_for(keys), self.clock) for s in STATIONS]
        self.sold = [0] * len(STATIONS)  # each station's own journal
        self.ledger: dict[str, int] = {}  # what headquarters knows
        self.cut = set(cut)
        self.rev = 0
        for i, view in enumerate(self.views):
            if i in self.cut:
                view.link_changed(False)
            else:
                self.sync(i)

    def sync(self, i: int) -> None:
        self.rev += 1
        others = {s: ml for s, ml in self.ledger.items() if s != STATIONS[i]}
        batch = [entry(others, rev=self.rev)] if others else []
        request = json.loads(self.views[i].sync_request(DAY, "WIB", dt.datetime.now(dt.UTC)))
        self.views[i].offer(self.feed.batch(batch, kind="sync", station=STATIONS[i], nonce=request["nonce"]), DAY)

    def push(self) -> None:
        for i in range(len(STATIONS)):
            if i not in self.cut:
                self.sync(i)

    def visit(self, i: int, want: int) -> int:
        view = self.views[i]
        elsewhere = view.elsewhere(VID, "solar", DAY, 60, SHARE)
        decision = decide(VID, "solar", OneCar(), policy(SHARE), self.sold[i], want, dt.datetime.now(dt.UTC),
                          None, elsewhere)
        took = decision.preset_ml if decision.ok else 0
        self.sold[i] += took
        if i not in self.cut and took:
            self.ledger[STATIONS[i]] = self.sold[i]
            self.push()
        return took

    def mend(self, i: int) -> None:
        self.cut.discard(i)
        self.ledger[STATIONS[i]] = self.sold[i]
        self.push()


visits = st.lists(st.tuples(st.integers(0, 4), st.integers(1_000, 80_000)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(0, 4), max_size=4), visits, st.lists(st.integers(0, 4), max_size=3))
def test_a_vehicle_never_takes_more_than_the_bound(cut: set[int], drive: list[tuple[int, int]],
                                                   mended: list[int]) -> None:
    model = Model(cut)
    stale_sold_at: set[int] = set()
    half = len(drive) // 2
    for step, (i, want) in enumerate(drive):
        if step == half:
            for j in mended:  # some links come back mid-day
                model.mend(j)
        if model.visit(i, want) and i in model.cut:
            stale_sold_at.add(i)
    total = sum(model.sold)
    assert total <= QUOTA * (1 + SHARE * len(stale_sold_at)) + 1
    if not stale_sold_at:
        assert total <= QUOTA  # all links up: the quota, once


def test_back_to_exact_when_the_link_returns() -> None:
    model = Model(cut={1})
    assert model.visit(1, 60_000) == 30_000  # stale: the offline share
    assert model.visit(0, 60_000) == 60_000  # headquarters never heard of station 2's sale
    model.mend(1)
    assert not model.views[1].stale(60)  # synced again: exact, no longer the share
    assert model.views[2].elsewhere(VID, "solar", DAY, 60, SHARE).used_ml == 90_000  # everyone counts both
    assert model.visit(2, 10_000) == 0
    assert model.visit(1, 10_000) == 0
    assert sum(model.sold) == QUOTA * (1 + SHARE)
