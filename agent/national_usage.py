"""Usage of the national daily quota at other stations, as headquarters' ledger reports it.

Headquarters sends each station, on its own topic `hq/v1/usage/<station>`, signed batches of
entries: for one vehicle, product and quota day, the litres each *other* station has
dispensed (a per-station counter) and the fills still in progress elsewhere (reservations).
A station's own sales never come back to it: its journal is its own counter.

Merging is idempotent and order-free: a counter is merged by maximum, so duplicates,
replays, reconnects and a restarted headquarters can never lower a vehicle's known usage
or count a fill twice. Reservations are not monotone (a fill ends), so an entry's
reservations replace those known only when the entry's revision (headquarters' one
sequence for that vehicle-day) is higher.

Freshness: the feed is *fresh* while the station is synced with headquarters (a sync
answer since the last reconnect) and has heard from it within the policy's signed
threshold. A sync answer counts only if it echoes a nonce this station put in a request
since its last (re)connect, and a batch refreshes the feed only if headquarters signed it no
earlier than that answer: the sequence guard is in memory, so after a restart a replayed
answer or batch could otherwise make a feed cut off look fresh. When it is stale,
eligibility sells each vehicle at most the policy's signed offline share of its quota per
day (agent/eligibility.py), which bounds what a vehicle can take while stations are
partitioned (docs/national-quota.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from agent.domain import PRODUCTS
from agent.trust.root import TrustError, TrustStore, check_signatures, parse_envelope
from agent.trust.tx_sign import RESERVE_DOMAIN, USAGE_SYNC_DOMAIN, sign_record

USAGE_TYPE = "usage"
KIND_UPDATE = "update"
KIND_SYNC = "sync"
KIND_TICK = "tick"
MAX_ENTRIES = 20_000  # per batch; headquarters splits larger answers
MAX_STATIONS_PER_ENTRY = 256  # stations one vehicle visited in a day: far beyond any honest use
MAX_ML = 10_000_000  # 10,000 L for one vehicle at one station in a day is absurd already
MAX_BATCH_BYTES = 4 * 1024 * 1024
RESERVATION_TTL_S = 30 * 60  # a reservation nobody closed stops counting after this
_STATION_RE = re.compile(r"^[0-9A-Za-z._-]{1,32}$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NONCE_RE = re.compile(r"^[0-9A-Za-z_-]{16,64}$")
NONCES_KEPT = 16  # requests sent since the last (re)connect whose answers still count


class UsageRefused(ValueError):
    """A usage batch refused; `check` names why (events and tests use it)."""

    def __init__(self, check: str, detail: str = "") -> None:
        super().__init__(f"{check}: {detail}" if detail else check)
        self.check = check


@dataclass(frozen=True)
class Elsewhere:
    """What eligibility needs: usage of one vehicle-day at other stations, and the feed's state."""

    used_ml: int = 0
    reserved_ml: int = 0
    stale: bool = False
    offline_share: float | None = None  # fraction of the quota a stale station may sell; None: no cap

    @property
    def total_ml(self) -> int:
        return self.used_ml + self.reserved_ml


@dataclass
class VehicleDay:
    rev: int = 0
    used: dict[str, int] = field(default_factory=dict)  # station -> ml, merged by maximum
    reserved: dict[str, int] = field(default_factory=dict)  # station -> ml, from the highest revision
    reserved_at: float = 0.0  # monotonic time the reservations were learnt


@dataclass(frozen=True)
class Entry:
    vehicle_id: int
    product: str
    rev: int
    used: dict[str, int]
    reserved: dict[str, int]


@dataclass(frozen=True)
class Batch:
    kind: str
    day: str
    publisher: str
    seq: int
    issued: str
    last: bool
    entries: tuple[Entry, ...]
    nonce: str | None = None  # a sync answer's: the nonce of the request it answers


def usage_keyring_role(trust: TrustStore) -> str:
    """The `usage` role signs the feed; a root that does not name one leaves it to `policy`."""
    return USAGE_TYPE if USAGE_TYPE in trust.root.roles else "policy"


def verify_batch(trust: TrustStore, data: bytes) -> dict[str, Any]:
    if len(data) > MAX_BATCH_BYTES:
        raise UsageRefused("too large", f"{len(data)} bytes")
    try:
        signed, signatures = parse_envelope(data)
        if signed.get("_type") != USAGE_TYPE:
            raise UsageRefused("wrong type", f"expected 'usage', got {signed.get('_type')!r}")
        role = usage_keyring_role(trust)
        check_signatures(signed, signatures, trust.keyring(role), trust.threshold(role), role)
    except TrustError as exc:
        raise UsageRefused(exc.check, str(exc)) from exc
    return signed


def _int(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UsageRefused("absurd value", f"{name} must be an integer in {low}..{high}")
    return value


def _counters(value: object, name: str, own: str) -> dict[str, int]:
    if not isinstance(value, list) or len(value) > MAX_STATIONS_PER_ENTRY:
        raise UsageRefused("absurd size" if isinstance(value, list) else "malformed",
                           f"{name} must be a list of at most {MAX_STATIONS_PER_ENTRY} [station, ml]")
    out: dict[str, int] = {}
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and _STATION_RE.match(pair[0])):
            raise UsageRefused("malformed", f"{name}: each item is [station, ml]")
        if pair[0] == own:
            raise UsageRefused("own station", f"{name} names this station; its own sales are its journal")
        out[pair[0]] = _int(pair[1], f"{name} ml", 0, MAX_ML)
    return out


def _entry(raw: object, own: str) -> Entry:
    if not (isinstance(raw, list) and len(raw) == 5):
        raise UsageRefused("malformed", "an entry is [vehicle_id, product, rev, used, reserved]")
    vid, product, rev, used, reserved = raw
    if not isinstance(vid, str) or not vid.isdigit() or not 0 < int(vid) < 2**64:
        raise UsageRefused("malformed", "vehicle_id must be a decimal 64-bit id")
    if product not in PRODUCTS:
        raise UsageRefused("malformed", f"unknown product {product!r}")
    return Entry(int(vid), str(product), _int(rev, "rev", 1, 2**62), _counters(used, "used", own),
                 _counters(reserved, "reserved", own))


def parse_batch(signed: dict[str, Any], own: str, today: str) -> Batch:
    """The body of a verified batch, every field checked; `today` is this station's quota day."""
    kind = signed.get("kind")
    if kind not in (KIND_UPDATE, KIND_SYNC, KIND_TICK):
        raise UsageRefused("malformed", f"unknown kind {kind!r}")
    target = signed.get("station")
    if target != own and not (kind == KIND_TICK and target == "*"):
        raise UsageRefused("wrong station", f"batch for {target!r}")
    day, publisher, issued = signed.get("day"), signed.get("publisher"), signed.get("issued")
    if kind == KIND_TICK and day == "":
        pass  # a heartbeat for stations in every zone: it names no quota day
    elif not isinstance(day, str) or not _DAY_RE.match(day):
        raise UsageRefused("malformed", "day must be YYYY-MM-DD")
    elif day < today:
        raise UsageRefused("older day", f"batch for {day}, this station's day is {today}")
    elif day > today:
        raise UsageRefused("future day", f"batch for {day}, this station's day is {today}")
    if not isinstance(publisher, str) or not 0 < len(publisher) <= 64 or not isinstance(issued, str):
        raise UsageRefused("malformed", "publisher and issued are required")
    seq = _int(signed.get("seq"), "seq", 1, 2**62)
    entries = signed.get("entries")
    if not isinstance(entries, list):
        raise UsageRefused("malformed", "entries must be a list")
    if len(entries) > MAX_ENTRIES or (kind == KIND_TICK and entries):
        raise UsageRefused("absurd size", f"{len(entries)} entries")
    nonce = signed.get("nonce")
    if nonce is not None and not (isinstance(nonce, str) and _NONCE_RE.match(nonce)):
        raise UsageRefused("malformed", "nonce must be 16-64 URL-safe characters")
    return Batch(str(kind), str(day), publisher, seq, issued, bool(signed.get("last", True)),
                 tuple(_entry(e, own) for e in entries), nonce)


class NationalUsage:
    """The station's view of usage elsewhere: merge, freshness, replay guard. Not thread-safe:
    the station's event loop owns it."""

    def __init__(self, station_id: str, trust: TrustStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.station_id = station_id
        self.trust = trust
        self.clock = clock
        self.day = ""
        self.known: dict[tuple[int, str], VehicleDay] = {}
        self._seqs: dict[tuple[str, str], int] = {}  # (publisher, topic kind) -> last seq accepted
        self.synced = False  # a sync answer came since the last (re)connect
        self.heard_at: float | None = None  # monotonic time of the last batch while synced
        self.hq_since: str | None = None  # headquarters' time of the last update taken in
        self._nonces: deque[str] = deque(maxlen=NONCES_KEPT)  # sync requests since the last (re)connect
        self._synced_at: dt.datetime | None = None  # headquarters' signed time of that sync answer
        self.accepted = 0
        self.refused = 0

    # --- the link --------------------------------------------------------------------

    def link_changed(self, connected: bool) -> None:
        """Anything may have been missed while the link was down: synced again only when
        headquarters answers a sync request (sync_request) sent since: an answer to one sent
        before (in flight, or replayed) proves nothing about the link now."""
        self.synced = False
        self._nonces.clear()

    def sync_request(self, day: str, zone: str, at: dt.datetime,
                     key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """at: the station's best estimate of headquarters' time (headquarters refuses a
        request far from its own clock: a replay). A fresh nonce each time, which the
        answer must echo; signed with the station key when there is one."""
        nonce = secrets.token_urlsafe(18)
        self._nonces.append(nonce)
        body: dict[str, Any] = {"schema": "spbu.usage_sync/1", "station": self.station_id, "day": day,
                                "zone": zone, "since": self.hq_since if day == self.day else None,
                                "at": at.isoformat(), "nonce": nonce}
        if key is not None:
            body = sign_record(body, key, USAGE_SYNC_DOMAIN)
        return json.dumps(body, separators=(",", ":")).encode()

    def age_s(self) -> float | None:
        return None if self.heard_at is None or not self.synced else self.clock() - self.heard_at

    def stale(self, threshold_s: float) -> bool:
        age = self.age_s()
        return age is None or age > threshold_s

    # --- batches ---------------------------------------------------------------------

    def offer(self, data: bytes, today: str) -> Batch:
        """Verify, check and merge one batch; raise UsageRefused (nothing changed) otherwise."""
        try:
            batch = parse_batch(verify_batch(self.trust, data), self.station_id, today)
            slot = (batch.publisher, KIND_TICK if batch.kind == KIND_TICK else "station")
            if batch.seq <= self._seqs.get(slot, 0):
                raise UsageRefused("replayed", f"{batch.publisher} seq {batch.seq} <= {self._seqs[slot]}")
        except UsageRefused:
            self.refused += 1
            raise
        self._seqs[slot] = batch.seq
        self._roll(today)
        now = self.clock()
        for entry in batch.entries:
            self._merge(entry, now)
        issued = signed_moment(batch.issued)
        if batch.kind == KIND_SYNC and batch.last and batch.nonce in self._nonces and issued is not None:
            self.synced, self._synced_at = True, issued
        if self.synced and issued is not None and self._synced_at is not None and issued >= self._synced_at:
            # Signed before the answer that synced us, a batch carries nothing newer than it:
            # replayed (after a restart the sequence guard is empty), it must not look fresh.
            self.heard_at = now
            if batch.kind != KIND_TICK and (self.hq_since is None or batch.issued > self.hq_since):
                self.hq_since = batch.issued
        self.accepted += 1
        return batch

    def _roll(self, today: str) -> None:
        if today != self.day:  # a new quota day: yesterday's usage no longer matters
            self.day = today
            self.known.clear()
            self.hq_since = None

    def _merge(self, entry: Entry, now: float) -> None:
        known = self.known.setdefault((entry.vehicle_id, entry.product), VehicleDay())
        for station, ml in entry.used.items():
            if ml > known.used.get(station, 0):
                known.used[station] = ml
        if entry.rev > known.rev:
            known.rev = entry.rev
            known.reserved = dict(entry.reserved)
            known.reserved_at = now

    # --- what eligibility asks ---------------------------------------------------------

    def elsewhere(self, vehicle_id: int, product: str, day: str, threshold_s: float | None,
                  offline_share: float | None) -> Elsewhere:
        """threshold_s None: the policy configures no national feed (local quota only)."""
        if threshold_s is None:
            return Elsewhere()
        stale = self.stale(threshold_s)
        known = self.known.get((vehicle_id, product)) if day == self.day else None
        if known is None:
            return Elsewhere(stale=stale, offline_share=offline_share if stale else None)
        reserved = 0
        if self.clock() - known.reserved_at < RESERVATION_TTL_S:
            reserved = sum(known.reserved.values())
        return Elsewhere(sum(known.used.values()), reserved, stale, offline_share if stale else None)

    def stations(self, vehicle_id: int, product: str) -> int:
        known = self.known.get((vehicle_id, product))
        return 0 if known is None else len(known.used)


def reservation(station: str, tx_id: str, vehicle_id: int, product: str, day: str, ml: int, op: str,
                now: dt.datetime, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """A fill opening (op "open", ml = its preset) or closing ("close") at this station; `now`
    is the station's best estimate of headquarters' time (headquarters refuses one far from
    its own clock: a replay); signed with the station key when there is one."""
    body: dict[str, Any] = {"schema": "spbu.reserve/1", "station": station, "tx_id": tx_id,
                            "vehicle_id": str(vehicle_id), "product": product, "day": day, "ml": ml, "op": op,
                            "at": now.isoformat()}
    if key is not None:
        body = sign_record(body, key, RESERVE_DOMAIN)
    return json.dumps(body, separators=(",", ":")).encode()


def signed_moment(text: str) -> dt.datetime | None:
    """An aware time from headquarters' `issued` (None if it is not one)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
