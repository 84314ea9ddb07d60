"""Headquarters' transaction collector.

Several collector processes share one MQTT shared subscription
(`$share/collectors/spbu/v1/+/tx`), so the broker hands each message to one of them. Each
stores what it receives in one SQLite database (UNIQUE tx_id, INSERT OR IGNORE: a resent
transaction is stored once whichever collector gets it), commits, and only then
acknowledges the ids to the station on `hq/v1/ack/<station>`. Work is batched: everything
that arrived while the last batch was being committed goes into the next transaction and
one acknowledgement per station.

Cross-station reconciliation: the quota is enforced by each station from its own journal,
so a vehicle that buys at several stations while they are offline can exceed its daily
quota. The collector sums each vehicle's litres per product and local day over all
stations and raises an alert (kept in the `alerts` table) when the sum passes the limit.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import topics
from agent.trust.acks import sign_ack
from hq.tx_verify import TxSignatureError, Verifier

log = logging.getLogger(__name__)

SHARE_GROUP = "collectors"
MAX_BATCH = 1000  # ids per acknowledgement (ack.schema.json allows 1000)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tx (
    tx_id TEXT NOT NULL UNIQUE,
    station TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    product TEXT NOT NULL,
    day TEXT NOT NULL,
    dispensed_ml INTEGER NOT NULL,
    limit_ml INTEGER NOT NULL,
    record TEXT NOT NULL,
    collector TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_vehicle_day ON tx(vehicle_id, product, day);
CREATE TABLE IF NOT EXISTS alerts (
    vehicle_id TEXT NOT NULL,
    product TEXT NOT NULL,
    day TEXT NOT NULL,
    total_ml INTEGER NOT NULL,
    limit_ml INTEGER NOT NULL,
    stations TEXT NOT NULL,
    raised_at REAL NOT NULL,
    PRIMARY KEY (vehicle_id, product, day)
);
"""


def share_topic(group: str = SHARE_GROUP) -> str:
    return f"$share/{group}/{topics.TX_ALL}"


@dataclass(frozen=True)
class QuotaAlert:
    vehicle_id: str
    product: str
    day: str
    total_ml: int
    limit_ml: int
    stations: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"alert": "quota_exceeded_across_stations", "vehicle_id": self.vehicle_id,
                "product": self.product, "day": self.day, "total_ml": self.total_ml,
                "limit_ml": self.limit_ml, "stations": list(self.stations)}


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int
    alerts: list[QuotaAlert]


class RecordError(ValueError):
    pass


def parse_record(topic: str, payload: bytes) -> dict[str, Any]:
    """The fields the collector relies on, checked; anything else is the station's business."""
    station = topics.station_of(topic)
    try:
        record = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError("not JSON") from exc
    if not isinstance(record, dict):
        raise RecordError("not an object")
    if record.get("station") != station or station is None:
        raise RecordError("station in the record is not the topic's")
    quota = record.get("quota")
    if (not isinstance(record.get("tx_id"), str) or not isinstance(record.get("vehicle_id"), str)
            or not isinstance(record.get("product"), str) or not isinstance(quota, dict)
            or not isinstance(quota.get("day"), str) or not isinstance(quota.get("limit_ml"), int)
            or not isinstance(record.get("dispensed_ml"), int)):
        raise RecordError("tx_id, vehicle_id, product, dispensed_ml or quota missing or mistyped")
    return record


class CollectorStore:
    """Headquarters' SQLite store, shared by every collector process (WAL, busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        # Several collectors may open a new store at the same moment; switching it to WAL
        # takes an exclusive lock that SQLite does not wait for, so the loser tries again.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged means stored

    def close(self) -> None:
        self._db.close()

    def store(self, records: list[dict[str, Any]], collector: str, raw: list[str] | None = None) -> StoreResult:
        """raw: the records as received (stored as they came), else they are serialised here."""
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO tx (tx_id, station, vehicle_id, product, day, dispensed_ml, limit_ml,"
                " record, collector, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r["tx_id"], r["station"], r["vehicle_id"], r["product"], r["quota"]["day"], r["dispensed_ml"],
                  r["quota"]["limit_ml"], raw[i] if raw is not None else json.dumps(r, separators=(",", ":")),
                  collector, now) for i, r in enumerate(records)])
            stored = self._db.total_changes - before
            alerts = self._reconcile({(r["vehicle_id"], r["product"], r["quota"]["day"]) for r in records}, now)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return StoreResult(stored, len(records) - stored, alerts)

    def _reconcile(self, keys: set[tuple[str, str, str]], now: float) -> list[QuotaAlert]:
        """One grouped query for every vehicle-day the batch touched (not one per key)."""
        alerts = []
        rows = self._db.execute(
            "SELECT t.vehicle_id, t.product, t.day, SUM(t.dispensed_ml), MAX(t.limit_ml),"
            " GROUP_CONCAT(DISTINCT t.station) FROM (SELECT DISTINCT json_extract(value, '$[0]') AS v,"
            " json_extract(value, '$[1]') AS p, json_extract(value, '$[2]') AS d FROM json_each(?)) AS k"
            " JOIN tx AS t ON t.vehicle_id = k.v AND t.product = k.p AND t.day = k.d"
            " GROUP BY t.vehicle_id, t.product, t.day"
            " HAVING COUNT(DISTINCT t.station) > 1 AND SUM(t.dispensed_ml) > MAX(t.limit_ml)",
            (json.dumps(sorted(keys)),)).fetchall()
        for vehicle, product, day, total, limit, stations in rows:
            names = tuple(sorted(str(stations).split(",")))
            if limit:
                changed = self._db.execute(
                    "INSERT INTO alerts (vehicle_id, product, day, total_ml, limit_ml, stations, raised_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET total_ml=excluded.total_ml,"
                    " stations=excluded.stations WHERE total_ml != excluded.total_ml",
                    (vehicle, product, day, total, limit, ",".join(names), now)).rowcount
                if changed:
                    alerts.append(QuotaAlert(vehicle, product, day, int(total), int(limit), names))
        return alerts

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM tx").fetchone()[0])

    def tx_ids(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT tx_id FROM tx ORDER BY tx_id")]

    def by_collector(self) -> dict[str, int]:
        return {str(c): int(n) for c, n in self._db.execute("SELECT collector, COUNT(*) FROM tx GROUP BY collector")}

    def alerts(self) -> list[QuotaAlert]:
        rows = self._db.execute("SELECT vehicle_id, product, day, total_ml, limit_ml, stations FROM alerts"
                                " ORDER BY day, vehicle_id, product").fetchall()
        return [QuotaAlert(v, p, d, t, lim, tuple(s.split(","))) for v, p, d, t, lim, s in rows]


class Collector:
    """One collector process's MQTT side: shared subscription in, batched store, acks out."""

    def __init__(self, host: str, port: int, db_path: Path, name: str | None = None,
                 group: str = SHARE_GROUP, on_alert: Callable[[QuotaAlert], None] | None = None,
                 tls: tuple[Path, Path, Path] | None = None, *, ack_key: Ed25519PrivateKey,
                 verifier: Verifier) -> None:
        """tls: (CA, certificate, key) for a broker that wants client certificates.
        ack_key: signs acknowledgements (the trust root's `acks` role). verifier: checks each
        record's station signature (hq/tx_verify.py StationKeys.verify)."""
        self.ack_key = ack_key
        self.verifier = verifier
        self.name = name or f"collector-{uuid.uuid4().hex[:8]}"
        self.host = host
        self.port = port
        self.group = group
        self.store = CollectorStore(db_path)
        self.on_alert = on_alert
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"{self.name}-store", daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spbu-hq-{self.name}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_message = self._on_message

    def start(self, timeout_s: float = 10.0) -> Collector:
        self._worker.start()
        # A session that outlives short disconnects keeps the shared subscription's queue.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        self.client.connect_async(self.host, self.port, keepalive=15, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise RuntimeError(f"collector could not reach the broker at {self.host}:{self.port}")
        return self

    def close(self) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self.store.close()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused connection: %s", self.name, reason)
            return
        client.subscribe(share_topic(self.group), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    def _next_batch(self) -> list[tuple[str, bytes]]:
        try:
            batch = [self._inbox.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not self._stop.is_set() or not self._inbox.empty():
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._handle(batch)
            except sqlite3.Error:
                # Nothing acknowledged: the stations send these again.
                log.exception("%s: storing a batch of %d failed", self.name, len(batch))

    def _handle(self, batch: list[tuple[str, bytes]]) -> None:
        records: dict[str, dict[str, Any]] = {}
        raw: dict[str, str] = {}
        valid = 0
        for topic, payload in batch:
            self.received += 1
            try:
                record = parse_record(topic, payload)
                self.verifier(record)
            except (RecordError, TxSignatureError) as exc:
                self.rejected += 1
                log.warning("%s: transaction on %s refused: %s", self.name, topic, exc)
                continue
            valid += 1
            if record["tx_id"] not in records:
                records[record["tx_id"]] = record
                raw[record["tx_id"]] = payload.decode()
        if not records:
            return
        result = self.store.store(list(records.values()), self.name, list(raw.values()))
        self.stored += result.stored
        self.duplicates += result.duplicates + valid - len(records)
        for alert in result.alerts:
            log.warning("quota exceeded across stations: %s", alert.as_dict())
            if self.on_alert is not None:
                self.on_alert(alert)
        # Stored and committed: now the stations may forget them.
        by_station: dict[str, list[str]] = {}
        for record in records.values():
            by_station.setdefault(record["station"], []).append(record["tx_id"])
        at = dt.datetime.now(dt.UTC)
        for station, ids in by_station.items():
            for start in range(0, len(ids), MAX_BATCH):
                self.client.publish(topics.ack(station), sign_ack(self.ack_key, station, ids[start:start + MAX_BATCH],
                                                                  at), qos=1)
