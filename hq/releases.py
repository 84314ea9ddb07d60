"""Headquarters' side of the allow-list: registry CSV in, signed releases out, published over MQTT.

A release directory holds, per version N: `store-N.bin` (the snapshot), `delta-M-N.bin`
(from the previous version), `manifest-N.json` (signed), plus `salt` (16 bytes, hex).
Each manifest lists the last `CHAIN` deltas, so a station a week behind still takes deltas.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.allowlist import build
from agent.allowlist import manifest as manifests
from agent.allowlist.store import StoreError, check_class
from agent.domain import PRODUCTS
from agent.durable import atomic_write
from agent.trust import root as trust

CHAIN = 7
KEEP_SNAPSHOTS = 2


class ReleaseError(ValueError):
    pass


def parse_products(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    mask = 0
    for name in re.split(r"[+|]", text):
        if name.strip() not in PRODUCTS:
            raise ReleaseError(f"unknown product {name.strip()!r}")
        mask |= PRODUCTS[name.strip()]
    return mask


def read_registry(path: Path) -> build.Table:
    """CSV with header vehicle_id,category,products,status (products: pertalite+solar or a mask)."""
    rows = []
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                rows.append((int(row["vehicle_id"]), row["category"].strip(), parse_products(row["products"]),
                             row["status"].strip()))
            except (KeyError, ValueError, AttributeError) as exc:
                raise ReleaseError(f"{path}:{line}: {exc}") from exc
    try:
        return build.from_entries(rows)
    except StoreError as exc:
        raise ReleaseError(f"{path}: {exc}") from exc


def apply_changes(table: build.Table, path: Path) -> build.Table:
    """CSV with header op,vehicle_id,category,products,status; op is add, change or remove."""
    current = table.as_dict()
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                op, vid = row["op"].strip(), int(row["vehicle_id"])
                if op == "remove":
                    if current.pop(vid, None) is None:
                        raise ReleaseError(f"vehicle {vid} is not listed")
                elif op in ("add", "change"):
                    if (op == "add") == (vid in current):
                        raise ReleaseError(f"vehicle {vid} {'is already' if op == 'add' else 'is not'} listed")
                    current[vid] = check_class([row["category"].strip(), parse_products(row["products"]),
                                                row["status"].strip()])
                else:
                    raise ReleaseError(f"unknown op {op!r}")
            except (KeyError, ValueError, AttributeError, StoreError) as exc:
                raise ReleaseError(f"{path}:{line}: {exc}") from exc
    return build.from_entries((k, *v) for k, v in current.items())


class Releases:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def versions(self) -> list[int]:
        found = (re.fullmatch(r"manifest-(\d+)\.json", p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> int:
        versions = self.versions()
        return versions[-1] if versions else 0

    def salt(self) -> bytes:
        path = self.dir / "salt"
        if not path.exists():
            atomic_write(path, os.urandom(16).hex().encode())
        return bytes.fromhex(path.read_text().strip())

    def store_path(self, version: int) -> Path:
        return self.dir / f"store-{version}.bin"

    def delta_path(self, version: int) -> Path:
        return self.dir / f"delta-{version - 1}-{version}.bin"

    def manifest_path(self, version: int) -> Path:
        return self.dir / f"manifest-{version}.json"

    def table(self, version: int) -> build.Table:
        return build.load(self.store_path(version))[0]

    def release(self, table: build.Table, keys: list[Ed25519PrivateKey], validity: dt.timedelta,
                chunk_size: int = manifests.DEFAULT_CHUNK, now: dt.datetime | None = None) -> int:
        """Sign the next version: snapshot, delta from the previous one, manifest."""
        previous = self.latest()
        version = previous + 1
        snapshot = build.encode(table, version)
        atomic_write(self.store_path(version), snapshot)
        if previous and self.store_path(previous).exists():
            delta = build.diff(self.table(previous), table, previous, version)
            atomic_write(self.delta_path(version), build.encode_delta(delta))
        chain: list[tuple[int, int, bytes]] = []
        v = version
        while v > max(1, version - CHAIN) and self.delta_path(v).exists():
            chain.insert(0, (v - 1, v, self.delta_path(v).read_bytes()))
            v -= 1
        created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        body = manifests.manifest_body(version, created, created + validity, self.salt(), len(table),
                                       snapshot, chain, chunk_size)
        atomic_write(self.manifest_path(version), trust.sign(body, keys))
        for old in self.versions()[:-KEEP_SNAPSHOTS]:
            self.store_path(old).unlink(missing_ok=True)
        return version

    def blobs(self, version: int) -> dict[str, bytes]:
        """Every chunk the manifest of `version` refers to, by digest."""
        raw = self.manifest_path(version).read_bytes()
        body = json.loads(raw)["signed"]
        size = body["chunk_size"]
        out: dict[str, bytes] = {}
        sources = [(body["snapshot"], self.store_path(version))]
        sources += [(d, self.delta_path(d["to"])) for d in body["deltas"]]
        for spec, path in sources:
            data = path.read_bytes()
            for i, digest in enumerate(spec["chunks"]):
                out[digest] = data[i * size:(i + 1) * size]
        return out


class Publisher:
    """Puts a release on the broker: chunks first, roots, then the manifest that names them."""

    def __init__(self, host: str, port: int, client_id: str = "spbu-hq-allowlist") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._up = threading.Event()
        self.client.on_connect = lambda *a: self._up.set()
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ReleaseError(f"cannot reach the broker at {host}:{port}: {exc.strerror or exc}") from exc
        self.client.loop_start()
        if not self._up.wait(10):
            raise ReleaseError(f"cannot reach the broker at {host}:{port}")
        self.published: set[str] = set()

    def _put(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            raise ReleaseError(f"broker did not take {topic}")

    def publish(self, manifest: bytes, chunks: dict[str, bytes], roots: list[bytes] | None = None,
                clear: Iterable[str] = ()) -> int:
        sent = 0
        for digest, data in chunks.items():
            if digest not in self.published:
                self._put(topics.allowlist_chunk(digest), data)
                self.published.add(digest)
                sent += 1
        for raw in roots or []:
            self._put(topics.root(int(json.loads(raw)["signed"]["version"])), raw)
        self._put(topics.ALLOWLIST_MANIFEST, manifest)
        for digest in clear:  # chunks no manifest refers to any more
            if digest not in chunks:
                self._put(topics.allowlist_chunk(digest), b"")
                self.published.discard(digest)
        return sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def table_of(entries: Iterable[tuple[int, str, int, str]]) -> build.Table:
    return build.from_entries(entries)
