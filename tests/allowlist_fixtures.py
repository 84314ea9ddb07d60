"""Headquarters and station halves of the signed allow-list, for the tests: real keys, real
files, the real sync logic (driven message by message, or through a real broker)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.allowlist import build
from agent.allowlist.repo import AllowListRepo
from agent.allowlist.store import Entry
from agent.allowlist.sync import AllowListSync, SyncEvent
from agent.trust import root as trust
from hq.releases import Releases

CLASSES: list[Entry] = [("motorcycle", 1, "active"), ("private_car", 1, "active"), ("private_car", 2, "active"),
                        ("goods_4w", 2, "suspended")]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def registry(count: int, seed: int = 1) -> dict[int, Entry]:
    rng = random.Random(seed)
    out: dict[int, Entry] = {}
    while len(out) < count:
        out[rng.getrandbits(64) or 1] = rng.choice(CLASSES)
    return out


def table(entries: dict[int, Entry]) -> build.Table:
    return build.from_entries((k, *v) for k, v in entries.items())


@dataclass
class Headquarters:
    """Offline root keys (2 of 3), one online key per role, and a release directory."""

    directory: Path
    root_keys: list[Ed25519PrivateKey] = field(default_factory=lambda: [Ed25519PrivateKey.generate()
                                                                        for _ in range(3)])
    role_keys: dict[str, list[Ed25519PrivateKey]] = field(default_factory=lambda: {
        role: [Ed25519PrivateKey.generate()] for role in (*trust.ROLES, "software") if role != "root"})
    thresholds: dict[str, int] = field(default_factory=lambda: {"root": 2})
    root_version: int = 1
    chunk_size: int = 4096

    def __post_init__(self) -> None:
        self.releases = Releases(self.directory / "releases")
        self.roots: list[bytes] = [self.sign_root(self.root_keys[:2])]

    def root_body(self) -> dict[str, Any]:
        keys = {"root": [k.public_key() for k in self.root_keys],
                **{r: [k.public_key() for k in ks] for r, ks in self.role_keys.items()}}
        return trust.root_body(self.root_version, NOW + dt.timedelta(days=365), keys, self.thresholds)

    def sign_root(self, signers: list[Ed25519PrivateKey]) -> bytes:
        return trust.sign(self.root_body(), signers)

    def root_file(self) -> Path:
        path = self.directory / "root.json"
        path.write_bytes(self.roots[0])
        return path

    def release(self, entries: dict[int, Entry], keys: list[Ed25519PrivateKey] | None = None,
                validity: dt.timedelta = dt.timedelta(days=7)) -> int:
        return self.releases.release(table(entries), keys or self.role_keys["allowlist"], validity,
                                     self.chunk_size, now=NOW)

    def manifest(self, version: int) -> bytes:
        return self.releases.manifest_path(version).read_bytes()

    def chunks(self, version: int) -> dict[str, bytes]:
        return self.releases.blobs(version)

    def rotate(self, role: str, old_signers: int = 2) -> bytes:
        """Root N+1 with a fresh key for `role`, signed by old and new root keys."""
        old_root_keys = list(self.root_keys)
        if role == "root":
            self.root_keys = [Ed25519PrivateKey.generate() for _ in range(3)]
        else:
            self.role_keys[role] = [Ed25519PrivateKey.generate()]
        self.root_version += 1
        signers = old_root_keys[:old_signers] + (self.root_keys[:2] if role == "root" else [])
        raw = self.sign_root(list({id(k): k for k in signers}.values()))
        self.roots.append(raw)
        return raw


class Station:
    """The station side of the sync without a network: messages are handed in directly."""

    def __init__(self, directory: Path, root_file: Path) -> None:
        self.directory = directory
        self.trust = trust.TrustStore.from_root_file(root_file, directory / "trust.json")
        self.repo = AllowListRepo(directory / "allowlist", self.trust)
        self.events: list[SyncEvent] = []
        self.sync = AllowListSync("127.0.0.1", 9, "34.401.01", self.repo, self.trust, self.events.append,
                                  chunk_timeout_s=30.0, now=lambda: NOW)

    def offer(self, manifest: bytes, chunks: dict[str, bytes] | None = None) -> None:
        self.sync._handle(topics.ALLOWLIST_MANIFEST, manifest)
        for _ in range(10_000):  # bounded: each pass hands over what was asked for
            if not self.sync.fetcher._inflight:
                break
            for digest in list(self.sync.fetcher._inflight):
                self.sync._handle(topics.allowlist_chunk(digest), (chunks or {}).get(digest, b""))

    def root(self, version: int, raw: bytes) -> None:
        self.sync._handle(topics.root(version), raw)

    def rejected(self) -> list[str]:
        return [e.check for e in self.events if e.kind == "rejected"]

    def installed(self) -> list[int]:
        return [e.version for e in self.events if e.kind == "installed"]

    def current(self) -> int | None:
        current = self.repo.open_current()
        if current is None:
            return None
        current.close()
        return current.version
