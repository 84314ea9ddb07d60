"""One headquarters ledger process: the transaction collector and the national usage ledger.

Several of these share the load through MQTT shared subscriptions
(`$share/collectors/spbu/v1/+/tx`, `.../reserve`, `.../usage_sync`): the broker hands each
message to one of them. For each batch of what arrived:

- transactions are stored in PostgreSQL (idempotent by tx_id) together with the usage they
  add, committed, then acknowledged to each station (`hq/v1/ack/<station>`), then the
  changed vehicle-days are published, signed, to the stations that need them;
- reservations (fills opening and closing) are recorded; a station that opens a fill for
  a vehicle with usage or fills elsewhere is told at once;
- a (re)connecting station's sync request is answered with its area's usage of the day,
  echoing the request's nonce (the station counts its feed as synced only on that answer).

With a verifier (every production process), reservations and sync requests must carry their
station's signature like transactions, and their signed time `at` must be within
MAX_CLOCK_GAP of headquarters' clock: a captured message replayed later is refused.

A signed tick every `tick_s` tells stations the feed is alive when nothing moves.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.domain import PRODUCTS, ZONES
from agent.trust.tx_sign import RESERVE_DOMAIN, USAGE_SYNC_DOMAIN
from hq.db import area_of
from hq.ledger import Key, LedgerStore, QuotaAlert, Reservation
from hq.records import DAY_RE, RecordError, json_object, parse_record
from hq.shared_subscriber import SHARE_GROUP, SharedSubscriber
from hq.tx_verify import StationKeys, TxSignatureError, Verifier
from hq.usage_feed import Message, UsageFeed

log = logging.getLogger(__name__)

SYNC_MARGIN = dt.timedelta(seconds=60)  # longer than any ledger transaction: nothing slips between
SWITCH_INTERVAL_S = 0.001  # as the station's (agent/station.py)
# Sync answers (a reconnecting station's catch-up: a query and a signed answer of its area's
# day each) are answered a few at a time between batches: when a hundred stations come back
# at once, the fills opening meanwhile must still hear of usage elsewhere before fuel flows.
SYNCS_PER_TURN = 2
# Transactions per batch: a batch is stored, acknowledged and fanned out before the next is
# taken, so its size bounds how long a fill opening meanwhile waits for its answer (a
# reconnecting station drains hours of outbox at once). 250 still commits in bulk.
MAX_TX_PER_BATCH = 250
# A signed reservation or sync request whose `at` is further than this from headquarters'
# clock is refused (a replay, or a station whose time is badly wrong: it asks again, dated by
# headquarters' signed time once it has heard any). Well inside a reservation's 30 minutes
# (hq/ledger.RESERVATION_TTL), the station clock's own tolerance (agent/clock.MAX_DRIFT),
# and a station asks for a sync again every 30 s while unanswered.
MAX_CLOCK_GAP = dt.timedelta(minutes=10)
_NONCE_RE = re.compile(r"^[0-9A-Za-z_-]{16,64}$")


def check_signed(body: dict[str, Any], domain: bytes, verifier: Verifier | None, now: dt.datetime) -> None:
    """With a verifier: the station's signature (TxSignatureError) and a signed time near
    headquarters' own (RecordError). Without one (lab and load runs) anything passes."""
    if verifier is None:
        return
    verifier(body, domain)
    at = _aware(body.get("at"))
    if at is None:
        raise RecordError("at missing or not an ISO time with a UTC offset")
    if abs(now - at) > MAX_CLOCK_GAP:
        raise RecordError(f"at {at.isoformat()} is {abs(now - at).total_seconds():.0f} s from headquarters' clock")


def _aware(value: object) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def parse_reservation(topic: str, payload: bytes, verifier: Verifier | None = None,
                      now: dt.datetime | None = None) -> Reservation:
    body = json_object(payload)
    station = topics.station_of(topic)
    if station is None or body.get("station") != station:
        raise RecordError("station in the reservation is not the topic's")
    check_signed(body, RESERVE_DOMAIN, verifier, now or dt.datetime.now(dt.UTC))
    vid, ml, day = body.get("vehicle_id"), body.get("ml"), body.get("day")
    if (not isinstance(body.get("tx_id"), str) or not isinstance(vid, str) or not vid.isdigit()
            or not 0 < int(vid) < 2**64 or body.get("product") not in PRODUCTS
            or not isinstance(day, str) or not DAY_RE.match(day) or body.get("op") not in ("open", "close")
            or not isinstance(ml, int) or isinstance(ml, bool) or not 0 <= ml <= 10_000_000):
        raise RecordError("tx_id, vehicle_id, product, day, ml or op missing or mistyped")
    return Reservation(station, body["tx_id"], int(vid), body["product"], day, ml, body["op"] == "open")


@dataclass(frozen=True)
class SyncRequest:
    station: str
    day: str
    zone: str
    since: dt.datetime | None
    nonce: str | None = None  # echoed in the answer


def parse_sync(topic: str, payload: bytes, verifier: Verifier | None = None,
               now: dt.datetime | None = None) -> SyncRequest:
    body = json_object(payload)
    station = topics.station_of(topic)
    if station is None or body.get("station") != station:
        raise RecordError("station in the sync request is not the topic's")
    check_signed(body, USAGE_SYNC_DOMAIN, verifier, now or dt.datetime.now(dt.UTC))
    day, zone, since, nonce = body.get("day"), body.get("zone"), body.get("since"), body.get("nonce")
    if not isinstance(day, str) or not DAY_RE.match(day) or zone not in ZONES:
        raise RecordError("day or zone missing or mistyped")
    if nonce is not None and not (isinstance(nonce, str) and _NONCE_RE.match(nonce)):
        raise RecordError("nonce must be 16-64 URL-safe characters")
    try:
        when = None if since is None else dt.datetime.fromisoformat(str(since))
    except ValueError as exc:
        raise RecordError("since is not an ISO time") from exc
    if when is not None and when.tzinfo is None:
        raise RecordError("since needs a UTC offset")
    return SyncRequest(station, day, str(zone), when, nonce)


@dataclass
class NodeStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    reservations: int = 0
    syncs: int = 0
    batches: int = 0
    busy_s: float = 0.0  # time spent handling batches (ledger CPU-bound work + database)
    feed_bytes: int = 0
    feed_messages: int = 0
    per_station_bytes: dict[str, int] = field(default_factory=dict)
    # Per batch: seconds its oldest message waited in this process, and seconds to handle it
    # (store, commit, acknowledge, publish): the ledger's share of the feed's propagation.
    batch_wait_s: list[float] = field(default_factory=list)
    batch_handle_s: list[float] = field(default_factory=list)


class LedgerNode(SharedSubscriber):
    role = "ledger"
    max_tx_per_batch = MAX_TX_PER_BATCH

    def __init__(self, host: str, port: int, dsn: str, keys: list[Ed25519PrivateKey], name: str | None = None,
                 group: str = SHARE_GROUP, on_alert: Callable[[QuotaAlert], None] | None = None,
                 tls: tuple[Path, Path, Path] | None = None, tick_s: float = 15.0,
                 ack_key: Ed25519PrivateKey | None = None, verifier: Verifier | None = None) -> None:
        """keys: the `usage` role's signing keys (the `policy` role's when the root names no
        `usage` role). tls: (CA, certificate, key) for a broker that wants client certificates.
        ack_key: signs acknowledgements (the root's `acks` role, else `commands`); default the
        first usage key, right only where one key holds every role (the simulator).
        verifier: each transaction's, reservation's and sync request's station signature
        (hq/tx_verify.py StationKeys.verify); the command line gives one unless told
        --accept-unsigned, in-process callers without one accept unsigned."""
        name = name or f"ledger-{uuid.uuid4().hex[:8]}"
        super().__init__(host, port, name, group, ack_key or keys[0], tls, poll_s=0.05)
        self.verifier = verifier
        self.store = LedgerStore(dsn)
        # The feed's publisher is the process's name; its sequences live in the database, so a
        # restarted process goes on where it was (stations keep refusing its old batches).
        self.feed = UsageFeed(keys, publisher=self.name, seq_source=self.store.reserve_seqs)
        self.on_alert = on_alert
        self.tick_s = tick_s
        self.stats = NodeStats()
        self._next_tick = 0.0
        self._syncs_due: deque[SyncRequest] = deque()  # the worker thread's own

    # compatibility with the collector's counters
    @property
    def received(self) -> int:
        return self.stats.received

    @property
    def stored(self) -> int:
        return self.stats.stored

    @property
    def duplicates(self) -> int:
        return self.stats.duplicates

    @property
    def rejected(self) -> int:
        return self.stats.rejected

    def subscriptions(self) -> list[str]:
        return [topics.TX_ALL, "spbu/v1/+/reserve", "spbu/v1/+/usage_sync"]

    def start(self, timeout_s: float = 10.0) -> LedgerNode:
        super().start(timeout_s)
        return self

    def close(self) -> None:
        super().close()
        self.store.close()

    # --- the worker ---------------------------------------------------------------------------

    def between_batches(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick and self.connected:
            self._next_tick = now + self.tick_s
            self._publish([self.feed.tick()])
        if self._syncs_due:
            self._answer_syncs()

    def idle_wait_s(self) -> float:
        return 0.0 if self._syncs_due else self.poll_s

    def batch_done(self, seconds: float, waited: float) -> None:
        self.stats.busy_s += seconds
        self.stats.batches += 1
        if len(self.stats.batch_handle_s) < 1_000_000:  # bounded: a long-running node keeps the first
            self.stats.batch_wait_s.append(round(waited, 4))
            self.stats.batch_handle_s.append(round(seconds, 4))

    def handle(self, batch: list[tuple[str, bytes]]) -> None:
        txs: list[tuple[dict[str, Any], bytes]] = []
        reservations: list[Reservation] = []
        syncs: list[SyncRequest] = []
        now = dt.datetime.now(dt.UTC)  # headquarters' clock: the judge of a signed message's time
        for topic, payload in batch:
            self.stats.received += 1
            try:
                if topic.endswith("/tx"):
                    record = parse_record(topic, payload)
                    if self.verifier is not None:
                        self.verifier(record)  # stored and acknowledged only if its station signed it
                    txs.append((record, payload))
                elif topic.endswith("/reserve"):
                    reservations.append(parse_reservation(topic, payload, self.verifier, now))
                elif topic.endswith("/usage_sync"):
                    syncs.append(parse_sync(topic, payload, self.verifier, now))
            except (RecordError, TxSignatureError) as exc:
                self.stats.rejected += 1
                log.warning("%s: message on %s refused: %s", self.name, topic, exc)
        # Fills opening first (their answer must beat the nozzle), then transactions; sync
        # answers wait for the turns between batches (_answer_syncs).
        if reservations:
            self._reservations(reservations)
        if txs:
            self._transactions(txs)
        self._syncs_due.extend(syncs)

    def _answer_syncs(self) -> None:
        turn = [self._syncs_due.popleft() for _ in range(min(SYNCS_PER_TURN, len(self._syncs_due)))]
        try:
            self._syncs(turn)
        except psycopg.Error:
            # Unanswered: the station asks again (agent/usage_link.RESYNC_EVERY_S).
            log.exception("%s: %d sync requests failed", self.name, len(turn))

    def _transactions(self, txs: list[tuple[dict[str, Any], bytes]]) -> None:
        records: dict[str, dict[str, Any]] = {}
        raw: dict[str, str] = {}
        for record, payload in txs:
            if record["tx_id"] not in records:
                records[record["tx_id"]] = record
                raw[record["tx_id"]] = payload.decode()
        result = self.store.store(list(records.values()), self.name, list(raw.values()))
        self.stats.stored += result.stored
        self.stats.duplicates += result.duplicates + len(txs) - len(records)
        for alert in result.alerts:
            log.warning("quota exceeded across stations: %s", alert.as_dict())
            if self.on_alert is not None:
                self.on_alert(alert)
        self.acknowledge(records.values())  # stored and committed: now the stations may forget them
        self._publish_updates(result.touched)

    def _publish_updates(self, keys: list[Key], only: dict[Key, set[str]] | None = None) -> None:
        if not keys:
            return
        rows = self.store.snapshot(keys)
        areas = {area_of(s) for row in rows.values() for s in row.stations()}
        self._publish(self.feed.updates(rows, self.store.stations_in(sorted(areas)), only))

    def _reservations(self, items: list[Reservation]) -> None:
        self.stats.reservations += len(items)
        changed = set(self.store.reserve(items))
        # Only the station opening a fill needs telling now (of usage and earlier fills
        # elsewhere); everyone else hears when the fill's transaction arrives.
        only: dict[Key, set[str]] = {}
        for item in items:
            key = (item.vehicle_id, item.product, item.day)
            if item.open and key in changed:
                only.setdefault(key, set()).add(item.station)
        if only:
            self._publish_updates(sorted(only), only)

    def _syncs(self, requests: list[SyncRequest]) -> None:
        self.stats.syncs += len(requests)
        self.store.register({r.station: r.zone for r in requests})
        for request in requests:
            since = None if request.since is None else request.since - SYNC_MARGIN
            keys = self.store.area_keys(area_of(request.station), request.day, since)
            rows = self.store.snapshot(keys)
            self._publish(self.feed.sync_answer(request.station, request.day, rows, request.nonce))

    def _publish(self, messages: list[Message]) -> None:
        for topic, payload in messages:
            self.stats.feed_bytes += len(payload)
            self.stats.feed_messages += 1
            station = topic.rsplit("/", 1)[-1]
            self.stats.per_station_bytes[station] = self.stats.per_station_bytes.get(station, 0) + len(payload)
            self.client.publish(topic, payload, qos=1)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {"n": len(values), "p50": ordered[len(ordered) // 2], "p99": ordered[int(0.99 * (len(ordered) - 1))],
            "max": ordered[-1]}


def main(argv: list[str] | None = None) -> int:
    """`python -m hq.ledger_node`: one ledger process (run several for the load)."""
    import argparse
    import signal

    from agent.trust.signing import load_private_key

    parser = argparse.ArgumentParser(prog="python -m hq.ledger_node", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--dsn", required=True, help="PostgreSQL connection string")
    parser.add_argument("--key", type=Path, required=True, help="the usage role's signing key (PEM)")
    parser.add_argument("--ack-key", type=Path, help="the acks role's key (PEM) for acknowledgements (default --key)")
    signed = parser.add_mutually_exclusive_group(required=True)
    signed.add_argument("--station-certs", type=Path,
                        help="directory of the stations' certificates (*.crt): only records, reservations"
                             " and sync requests they signed are taken")
    signed.add_argument("--accept-unsigned", action="store_true",
                        help="take records, reservations and sync requests without checking their station"
                             " signature or time (load benchmarks and the lab only)")
    parser.add_argument("--ca", type=Path, help="the CA that must have issued the station certificates")
    parser.add_argument("--name", help="process name (default: random)")
    parser.add_argument("--group", default=SHARE_GROUP, help="shared subscription group")
    parser.add_argument("--tick", type=float, default=15.0, help="seconds between signed heartbeats")
    parser.add_argument("--stats", type=Path, help="write counters as JSON here on exit")
    parser.add_argument("--max-tx-per-batch", type=int, default=MAX_TX_PER_BATCH,
                        help="transactions per batch (fewer: fills opening are answered sooner under load)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # The MQTT thread must not wait 5 ms (the default) for the GIL behind a busy store thread
    # at every socket read: under load that convoy alone delays the feed by whole seconds.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    verifier = None if args.accept_unsigned else StationKeys.from_directory(args.station_certs, args.ca).verify
    node = LedgerNode(args.host, args.port, args.dsn, [load_private_key(args.key)], name=args.name,
                      group=args.group, tick_s=args.tick, verifier=verifier,
                      ack_key=load_private_key(args.ack_key) if args.ack_key else None)
    node.max_tx_per_batch = args.max_tx_per_batch
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    node.start()
    print(f"{node.name} ready", flush=True)
    while not stop.wait(1.0):
        pass
    node.close()
    if args.stats is not None:
        stats = {k: v for k, v in vars(node.stats).items() if k != "per_station_bytes"}
        for name in ("batch_wait_s", "batch_handle_s"):
            stats[name] = _summary(stats[name])
        args.stats.write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
