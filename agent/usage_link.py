"""The station's side of the national quota on the MQTT link: asks headquarters for its
area's usage on every (re)connect, takes signed usage batches in (agent/national_usage.py),
publishes its own fills in progress (reservations), and watches the feed's freshness.
Reservations and sync requests are signed with the station key, as transaction records are
(headquarters' ledger refuses unsigned ones when it checks signatures).

Nothing here waits on the network: a scan reads the merged view from memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from agent import topics
from agent.journal import SessionRow
from agent.national_usage import Elsewhere, NationalUsage, UsageRefused, reservation, signed_moment
from agent.trust.documents import QuotaPolicy
from agent.trust.root import TrustStore

log = logging.getLogger(__name__)

RESYNC_EVERY_S = 30.0  # a sync request unanswered (no ledger yet, answer lost) is sent again

Publish = Callable[[str, bytes, int, bool], bool]


def fill_cap(session: SessionRow, elsewhere: Elsewhere | None) -> int | None:
    """Where a fill in progress must stop now that usage elsewhere is known (a copied QR in
    use at another station, or a first visit to this area): None while its preset still fits."""
    allowed = session.limit_ml - session.quota_before_ml - (elsewhere.total_ml if elsewhere else 0)
    return None if allowed >= session.preset_ml else max(0, allowed)


class UsageLink:
    def __init__(self, station_id: str, zone: str, trust: TrustStore, publish: Publish,
                 emit: Callable[[dict[str, Any]], None], policy: Callable[[], QuotaPolicy | None],
                 clock: Callable[[], float] = time.monotonic, key: ec.EllipticCurvePrivateKey | None = None,
                 hq_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        """clock: the station's monotonic clock (a benchmark compresses time through it).
        key: the station key that signs reservations and sync requests (None: unsigned).
        hq_now: the station's best estimate of headquarters' time, which dates them."""
        self.station_id = station_id
        self.zone = zone
        self.national = NationalUsage(station_id, trust, clock)
        self._publish = publish
        self._emit = emit
        self._policy = policy
        self._key = key
        self._hq_now = hq_now
        self._asked_at: float | None = None
        self.was_stale: bool | None = None
        self.last_issued: dt.datetime | None = None  # the latest accepted batch's signed time

    def _threshold(self) -> tuple[float | None, float | None]:
        policy = self._policy()
        if policy is None:
            return None, None
        return policy.usage_stale_after_s, policy.usage_offline_share

    @property
    def enabled(self) -> bool:
        return self._threshold()[0] is not None

    def on_link(self, connected: bool, day: str, now: float) -> None:
        self.national.link_changed(connected)
        if connected:
            self._ask(day, now)

    def _ask(self, day: str, now: float) -> None:
        self._asked_at = now
        request = self.national.sync_request(day, self.zone, self._hq_now(), self._key)
        self._publish(topics.usage_sync(self.station_id), request, 1, False)

    def on_message(self, payload: bytes, day: str) -> set[tuple[int, str]]:
        """Vehicles (id, product) whose usage elsewhere changed; a refused batch changes nothing
        and is reported with its reason."""
        try:
            batch = self.national.offer(payload, day)
        except UsageRefused as exc:
            log.warning("usage batch refused: %s", exc)
            self._emit({"type": "alert", "alert": "usage_rejected", "check": exc.check, "detail": str(exc)})
            return set()
        self.last_issued = signed_moment(batch.issued)  # headquarters' signed time (agent/clock.py)
        return {(e.vehicle_id, e.product) for e in batch.entries}

    def elsewhere(self, vehicle_id: int | None, product: str, day: str) -> Elsewhere | None:
        stale_after, share = self._threshold()
        if vehicle_id is None or stale_after is None:
            return None
        return self.national.elsewhere(vehicle_id, product, day, stale_after, share)

    def opened(self, session: SessionRow, connected: bool) -> None:
        self._reserve(session, session.preset_ml, "open", connected)

    def closed(self, session: SessionRow, connected: bool) -> None:
        self._reserve(session, 0, "close", connected)

    def _reserve(self, session: SessionRow, ml: int, op: str, connected: bool) -> None:
        # Best effort, never journaled: when the link is down the transaction itself (through
        # the outbox) closes the reservation at headquarters, and reservations expire.
        if connected and self.enabled:
            payload = reservation(self.station_id, session.tx_id, session.vehicle_id, session.product,
                                  session.quota_day, ml, op, self._hq_now(), self._key)
            self._publish(topics.reserve(self.station_id), payload, 1, False)

    def tick(self, now: float, day: str, connected: bool) -> tuple[bool, str] | None:
        """Every few seconds: ask again if unsynced; return (stale, detail) when the feed's
        freshness changed (for the attendant and the manager's alarms)."""
        stale_after, _share = self._threshold()
        if stale_after is None:
            return None
        if connected and not self.national.synced and (self._asked_at is None
                                                       or now - self._asked_at >= RESYNC_EVERY_S):
            self._ask(day, now)
        stale = self.national.stale(stale_after)
        previous, self.was_stale = self.was_stale, stale
        if stale == previous or (previous is None and not stale):
            return None  # no change (a feed fresh from the start is not news)
        age = self.national.age_s()
        detail = (f"usage feed {'stale' if stale else 'fresh'}: last synced "
                  f"{'never' if age is None else f'{age:.0f} s ago'}, threshold {stale_after:g} s")
        return stale, detail

