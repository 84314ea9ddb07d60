"""The MQTT side every headquarters process shares: shared subscriptions in, batches handed to
one worker thread, signed acknowledgements out.

Several processes subscribe to the same `$share/<group>/...` topics, so the broker hands each
message to one of them. A persistent session (clean_start off, 5 min expiry) keeps a
process's share of the queue across short disconnects. Whatever arrived while the last
batch was being committed goes into the next one: one database transaction and one
acknowledgement per station per batch, however fast the messages come.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Iterable
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

log = logging.getLogger(__name__)

SHARE_GROUP = "collectors"
MAX_BATCH = 1000  # messages per batch, and ids per acknowledgement (ack.schema.json allows 1000)


class SharedSubscriber:
    """Subclasses say what they subscribe to and handle each batch (in the worker thread)."""

    role = "collector"  # for the log and the error when the broker is out of reach
    max_tx_per_batch = MAX_BATCH  # transactions per batch (a smaller batch answers what waits behind it sooner)

    def __init__(self, host: str, port: int, name: str, group: str, ack_key: Ed25519PrivateKey,
                 tls: tuple[Path, Path, Path] | None = None, poll_s: float = 0.1) -> None:
        """tls: (CA, certificate, key) for a broker that wants client certificates. ack_key:
        signs acknowledgements (the trust root's `acks` role)."""
        self.name, self.host, self.port, self.group = name, host, port, group
        self.ack_key = ack_key
        self.poll_s = poll_s
        self._inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()  # topic, payload, arrived
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._worker = threading.Thread(target=self._work, name=f"{name}-store", daemon=True)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spbu-hq-{name}", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_message = lambda client, userdata, m: self._inbox.put((m.topic, bytes(m.payload),
                                                                               time.monotonic()))

    # --- what a subclass provides ------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Topics under `$share/<group>/`."""
        raise NotImplementedError

    def handle(self, batch: list[tuple[str, bytes]]) -> None:
        raise NotImplementedError

    def between_batches(self) -> None:
        """Called in the worker before each wait for messages (timers such as a heartbeat)."""

    def idle_wait_s(self) -> float:
        """How long the worker waits for a first message (0 while it has work of its own)."""
        return self.poll_s

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> SharedSubscriber:
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300  # the shared subscriptions' queue outlives short drops
        self.client.connect_async(self.host, self.port, keepalive=15, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise RuntimeError(f"{self.role} could not reach the broker at {self.host}:{self.port}")
        return self

    def close(self) -> None:
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("%s: broker refused connection: %s", self.name, reason)
            return
        client.subscribe([(f"$share/{self.group}/{topic}", 1) for topic in self.subscriptions()])
        self._connected.set()

    # --- the worker ---------------------------------------------------------------------------

    def _next_batch(self) -> list[tuple[str, bytes, float]]:
        try:
            batch = [self._inbox.get(timeout=self.idle_wait_s())]
        except queue.Empty:
            return []
        txs = int(batch[0][0].endswith("/tx"))
        while len(batch) < MAX_BATCH and txs < self.max_tx_per_batch:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
            txs += batch[-1][0].endswith("/tx")
        return batch

    def _work(self) -> None:
        while not self._stop.is_set() or not self._inbox.empty():
            self.between_batches()
            batch = self._next_batch()
            if not batch:
                continue
            started = time.monotonic()
            try:
                self.handle([(topic, payload) for topic, payload, _ in batch])
            except psycopg.Error:
                # Nothing acknowledged: the stations send the transactions again.
                log.exception("%s: a batch of %d failed", self.name, len(batch))
            self.batch_done(time.monotonic() - started, started - batch[0][2])

    def batch_done(self, seconds: float, waited: float) -> None:
        """After each batch, with the time it took and how long its oldest message waited."""

    def acknowledge(self, records: Iterable[dict[str, Any]]) -> None:
        """Signed acknowledgements of stored and committed transactions, per station: only now
        may the stations forget them."""
        by_station: dict[str, list[str]] = {}
        for record in records:
            by_station.setdefault(record["station"], []).append(record["tx_id"])
        at = dt.datetime.now(dt.UTC)
        for station, ids in by_station.items():
            for start in range(0, len(ids), MAX_BATCH):
                self.client.publish(topics.ack(station), sign_ack(self.ack_key, station, ids[start:start + MAX_BATCH],
                                                                  at), qos=1)
