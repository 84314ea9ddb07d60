"""Headquarters' transaction collector.

Several collector processes share one MQTT shared subscription
(`$share/collectors/spbu/v1/+/tx`), so the broker hands each message to one of them. Each
stores what it receives in one PostgreSQL database, the national usage ledger's
(hq/ledger.py: tx_id primary key, ON CONFLICT DO NOTHING, and only the rows inserted add to
the vehicles' usage: a resent transaction is counted once whichever collector gets it),
commits, and only then acknowledges the ids to the station on `hq/v1/ack/<station>`. Work is batched: everything
that arrived while the last batch was being committed goes into the next transaction and
one acknowledgement per station.

Cross-station reconciliation: stations count the quota nationally (docs/national-quota.md),
but one cut off from headquarters sells within its offline share unseen; the ledger sums
each vehicle's litres per product and local day over all stations and raises an alert
(the `alerts` table) when the sum passes the limit. hq/ledger_node.py is this collector
plus the usage feed to stations.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import topics
from agent.trust.acks import sign_ack
from hq.ledger import LedgerStore, QuotaAlert
from hq.tx_verify import TxSignatureError, Verifier

log = logging.getLogger(__name__)

SHARE_GROUP = "collectors"
MAX_BATCH = 1000  # ids per acknowledgement (ack.schema.json allows 1000)



def share_topic(group: str = SHARE_GROUP) -> str:
    return f"$share/{group}/{topics.TX_ALL}"


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


# The store is the national usage ledger's (hq/ledger.py, PostgreSQL): a transaction and the
# usage it adds commit together, idempotent by tx_id across every collector process.
CollectorStore = LedgerStore


class Collector:
    """One collector process's MQTT side: shared subscription in, batched store, acks out."""

    def __init__(self, host: str, port: int, dsn: str, name: str | None = None,
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
        self.store = LedgerStore(dsn)
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
            except psycopg.Error:
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
