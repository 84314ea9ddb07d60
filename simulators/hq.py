"""Headquarters simulator: signs and publishes the allow-list and quota policy, collects
transactions (idempotently, by id) and acknowledges them at application level."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.allowlist import manifest as allowlist_manifest
from agent.domain import CATEGORIES, PRODUCTS, STATUS_ACTIVE, STATUS_SUSPENDED
from agent.qr.tokens import issue_token
from agent.trust import root as trust
from agent.trust.acks import sign_ack
from agent.trust.documents import ALLOWLIST_KIND, POLICY_KIND
from agent.trust.signing import key_id, public_key_hex, sign_document
from hq.releases import Releases, table_of
from hq.tx_verify import StationKeys

log = logging.getLogger(__name__)

PERTALITE = PRODUCTS["pertalite"]
SOLAR = PRODUCTS["solar"]
REGIONS = ("B", "D", "F", "L", "N", "AB", "AD", "BK", "DK", "KT")

# Litres per local day (BPH Migas 04/P3JBT/BPH MIGAS/KOM/2020 for Solar; Pertalite at the
# station systems' default). Distributed signed, never built into the agent.
DEFAULT_LIMITS_L: dict[str, dict[str, int]] = {
    "solar": {"private_car": 60, "public_passenger_4w": 80, "goods_4w": 80, "public_6w_plus": 200},
    "pertalite": {"motorcycle": 10, "private_car": 120, "public_passenger_4w": 120, "goods_4w": 120},
}
DEFAULT_PRICES = {"pertalite": 10_000, "solar": 6_800}


@dataclass(frozen=True)
class RegistryEntry:
    vehicle_id: int
    category: str
    products: int
    status: str
    plate: str

    def as_list(self) -> list[Any]:
        return [self.vehicle_id, self.category, self.products, self.status, self.plate]


def synthetic_registry(count: int, seed: int = 7) -> list[RegistryEntry]:
    """A registry across categories: ids are random 64-bit, like hashed registration numbers."""
    rng = random.Random(seed)
    weights = {"motorcycle": 30, "private_car": 45, "public_passenger_4w": 8, "goods_4w": 12,
               "public_6w_plus": 5}
    entries: list[RegistryEntry] = []
    ids: set[int] = set()
    plates: set[str] = set()
    while len(entries) < count:
        vid = rng.getrandbits(64)
        if vid == 0 or vid in ids:
            continue
        category = rng.choices(list(weights), weights=list(weights.values()))[0]
        if category == "motorcycle":
            products = PERTALITE
        elif category == "private_car":
            products = SOLAR if rng.random() < 0.3 else PERTALITE
        elif category == "public_passenger_4w":
            products = PERTALITE | SOLAR
        else:
            products = SOLAR
        suffix = "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=rng.randint(1, 3)))
        plate = f"{rng.choice(REGIONS)} {rng.randint(1, 9999)} {suffix}"
        if plate in plates:
            continue
        status = STATUS_SUSPENDED if rng.random() < 0.01 else STATUS_ACTIVE
        ids.add(vid)
        plates.add(plate)
        entries.append(RegistryEntry(vid, category, products, status, plate))
    assert {e.category for e in entries} <= set(CATEGORIES)
    return entries


class HeadquartersSim:
    def __init__(self, host: str, port: int, registry: list[RegistryEntry],
                 key: Ed25519PrivateKey | None = None, validity_days: int = 14,
                 client_id: str | None = None, collect: bool = True,
                 station_keys: StationKeys | None = None, usage_feed: dict[str, float] | None = None) -> None:
        """station_keys: collect only records these stations signed (hq/tx_verify.py).
        usage_feed: the national quota's signed settings ({"stale_after_s", "offline_share"})
        put in the policy; None leaves each station counting only its own sales."""
        self.host = host
        self.station_keys = station_keys
        self.policy_extra: dict[str, Any] = {}  # more signed policy fields (legacy_qr, token ages...)
        self.usage_feed = usage_feed
        self.collect = collect  # False: hq/collector.py processes collect instead
        self.port = port
        self.registry = registry
        self.key = key or Ed25519PrivateKey.generate()
        self.validity = dt.timedelta(days=validity_days)
        self.received: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.rejected = 0
        self.allowlist_version = 0
        self.policy_version = 0
        self.releases = Releases(Path(tempfile.mkdtemp(prefix="spbu-hq-releases-")))
        self.chunk_size = allowlist_manifest.DEFAULT_CHUNK
        self._published_chunks: set[str] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        # A fixed client id keeps the collector's subscription across its reconnects; runs
        # that must not inherit each other's queued messages pass their own.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"spbu-hq-collector-{uuid.uuid4().hex[:8]}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self._connected.clear()
        self.client.on_message = self._on_message

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    @property
    def public_key_hex(self) -> str:
        return public_key_hex(self.key.public_key())

    def issue_token(self, vehicle_id: int, plate: str | None = None) -> str:
        """The signed QR text a customer's app shows (docs/qr-token.md)."""
        if plate is None:
            plate = next(e.plate for e in self.registry if e.vehicle_id == vehicle_id)
        return issue_token(vehicle_id, plate, dt.datetime.now(dt.UTC).date(), self.key)

    def start(self, timeout_s: float = 10.0) -> None:
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        if not self._connected.wait(timeout_s):
            raise RuntimeError(f"headquarters could not reach the broker at {self.host}:{self.port}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # --- documents ---------------------------------------------------------------------

    def _times(self) -> tuple[str, str]:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return now.isoformat(), (now + self.validity).isoformat()

    def signed_allowlist(self, version: int) -> bytes:
        created, expires = self._times()
        body = {"version": version, "created": created, "expires": expires,
                "entries": [e.as_list() for e in self.registry]}
        return sign_document(ALLOWLIST_KIND, body, self.key)

    def signed_policy(self, version: int) -> bytes:
        created, expires = self._times()
        body = {"version": version, "created": created, "expires": expires,
                "limits_l": DEFAULT_LIMITS_L, "prices_idr_per_l": DEFAULT_PRICES,
                "unregistered_l": {"pertalite": 0, "solar": 0}, "max_fill_l": 200}
        return sign_document(POLICY_KIND, body, self.key)

    def publish_documents(self) -> None:
        self.policy_version += 1
        self.publish_allowlist()
        data = self.signed_policy_tuf(self.policy_version)
        self.client.publish(topics.POLICY, data, qos=1, retain=True).wait_for_publish(timeout=10)

    # --- the signed allow-list (manifest + chunks) and its root of trust -----------------

    def root_bytes(self) -> bytes:
        """A root in which this headquarters' one key holds every role (threshold 1): a
        simulator's convenience; real deployments use `spbu allowlist keygen`."""
        public = self.key.public_key()
        far = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3650)
        body = trust.root_body(1, far, {role: [public] for role in trust.ALL_ROLES}, {})
        return trust.sign(body, [self.key])

    def release_allowlist(self) -> int:
        """Sign the registry as the next allow-list version (snapshot, delta, manifest)."""
        table = table_of([(e.vehicle_id, e.category, e.products, e.status) for e in self.registry])
        self.allowlist_version = self.releases.release(table, [self.key], self.validity, self.chunk_size)
        return self.allowlist_version

    def publish_allowlist(self) -> int:
        version = self.release_allowlist()
        chunks = self.releases.blobs(version)
        for digest, data in chunks.items():
            if digest not in self._published_chunks:
                self.client.publish(topics.allowlist_chunk(digest), data, qos=1, retain=True).wait_for_publish(30)
        for digest in self._published_chunks - set(chunks):
            self.client.publish(topics.allowlist_chunk(digest), b"", qos=1, retain=True).wait_for_publish(30)
        self._published_chunks = set(chunks)
        manifest = self.releases.manifest_path(version).read_bytes()
        self.client.publish(topics.ALLOWLIST_MANIFEST, manifest, qos=1, retain=True).wait_for_publish(timeout=10)
        return version

    def signed_policy_tuf(self, version: int) -> bytes:
        created, expires = self._times()
        body: dict[str, Any] = {
            "_type": POLICY_KIND, "version": version, "created": created, "expires": expires,
            "limits_l": DEFAULT_LIMITS_L, "prices_idr_per_l": DEFAULT_PRICES,
            "unregistered_l": {"pertalite": 0, "solar": 0}, "max_fill_l": 200}
        if self.usage_feed is not None:
            body["usage_feed"] = self.usage_feed
        body.update(self.policy_extra)
        return trust.sign(body, [self.key])

    def install_into(self, data_dir: Path) -> None:
        """Put the current documents straight into a station's data directory, as a
        station that synced before would have them (benchmarks and fixtures)."""
        from agent.docstore import DocumentStore
        from agent.durable import atomic_write

        version = self.allowlist_version or self.release_allowlist()
        docs = DocumentStore(data_dir, {self.key_id: self.public_key_hex})
        manifest = allowlist_manifest.verify(docs.trust, self.releases.manifest_path(version).read_bytes(),
                                             dt.datetime.now(dt.UTC))
        docs.repo.install(manifest, self.releases.store_path(version).read_bytes())
        atomic_write(docs.path(POLICY_KIND), self.signed_policy_tuf(max(1, self.policy_version)))

    # --- collector ---------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            if self.collect:
                client.subscribe(topics.TX_ALL, qos=1)
            self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        station = topics.station_of(message.topic)
        try:
            record = json.loads(message.payload)
            tx_id = str(record["tx_id"])
            if record.get("station") != station:
                raise ValueError("station mismatch")
            if self.station_keys is not None:
                self.station_keys.verify(record)
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            if tx_id in self.received:
                self.duplicates += 1
            else:
                self.received[tx_id] = record
        # Acknowledge after storing: the station may then forget it. Repeats are acked again.
        client.publish(topics.ack(station or ""), sign_ack(self.key, station or "", [tx_id]), qos=1)

    def transactions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received.values())
