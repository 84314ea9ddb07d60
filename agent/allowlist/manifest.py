"""The signed allow-list manifest: what version, valid when, and exactly which bytes.

Body (signed under the `allowlist` role, see agent/trust/root.py):

    {"_type": "allowlist", "version", "created", "expires", "salt": 32 hex chars,
     "count", "chunk_size",
     "snapshot": {"sha256", "length", "chunks": [sha256 of each chunk]},
     "deltas": [{"from", "to", "sha256", "length", "chunks": [...]}, ...]}

The snapshot is the store file of this version. Deltas form a chain ending at `version`; a
station takes the chain from its own version when that is smaller than the snapshot.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from dataclasses import dataclass
from typing import Any

from agent.trust.root import TrustError, TrustStore, parse_time

ROLE = "allowlist"
DEFAULT_CHUNK = 256 * 1024  # well under mosquitto's and most brokers' message limits
MAX_CHUNK = 1024 * 1024
MAX_ENTRIES = 2**32 - 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Blob:
    sha256: str
    length: int
    chunks: tuple[str, ...]
    chunk_size: int

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_size, self.length - index * self.chunk_size)


@dataclass(frozen=True)
class DeltaRef:
    from_version: int
    to_version: int
    blob: Blob


@dataclass(frozen=True)
class Manifest:
    version: int
    created: dt.datetime
    expires: dt.datetime
    salt: bytes
    count: int
    snapshot: Blob
    deltas: tuple[DeltaRef, ...]
    raw: bytes  # the signed envelope, kept beside the store

    def plan(self, current_version: int | None) -> list[DeltaRef] | None:
        """The delta chain from `current_version`, or None when the snapshot is smaller."""
        if current_version is None:
            return None
        chain = [d for d in self.deltas if d.from_version >= current_version]
        if not chain or chain[0].from_version != current_version:
            return None
        if sum(d.blob.length for d in chain) >= self.snapshot.length:
            return None
        return chain


def _int(body: dict[str, Any], name: str, minimum: int = 0, maximum: int = 2**63) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise TrustError("malformed", f"{name} must be an integer in [{minimum}, {maximum}]")
    return value


def _blob(body: object, chunk_size: int, name: str) -> Blob:
    if not isinstance(body, dict):
        raise TrustError("malformed", f"{name} must be an object")
    sha, chunks = body.get("sha256"), body.get("chunks")
    length = _int(body, "length", 1, 2**40)
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise TrustError("malformed", f"{name}.sha256 must be 64 hex digits")
    if not isinstance(chunks, list) or not all(isinstance(c, str) and _HEX64.match(c) for c in chunks):
        raise TrustError("malformed", f"{name}.chunks must be sha256 hex digests")
    if len(chunks) != -(-length // chunk_size):
        raise TrustError("malformed", f"{name}: {len(chunks)} chunks cannot hold {length} bytes")
    return Blob(sha, length, tuple(chunks), chunk_size)


def parse(body: dict[str, Any], raw: bytes) -> Manifest:
    version = _int(body, "version", 1)
    chunk_size = _int(body, "chunk_size", 1024, MAX_CHUNK)
    salt = body.get("salt")
    if not isinstance(salt, str) or not re.match(r"^[0-9a-f]{32}$", salt):
        raise TrustError("malformed", "salt must be 16 bytes as 32 hex digits")
    deltas = []
    raw_deltas = body.get("deltas", [])
    if not isinstance(raw_deltas, list):
        raise TrustError("malformed", "deltas must be a list")
    for i, d in enumerate(raw_deltas):
        if not isinstance(d, dict):
            raise TrustError("malformed", f"deltas[{i}] must be an object")
        deltas.append(DeltaRef(_int(d, "from", 0), _int(d, "to", 1), _blob(d, chunk_size, f"deltas[{i}]")))
    for prev, nxt in itertools.pairwise(deltas):
        if nxt.from_version != prev.to_version:
            raise TrustError("malformed", "delta chain is not contiguous")
    if any(d.to_version != d.from_version + 1 for d in deltas) or (deltas and deltas[-1].to_version != version):
        raise TrustError("malformed", "delta chain must step by one version up to this one")
    return Manifest(version, parse_time(body.get("created"), "created"), parse_time(body.get("expires"), "expires"),
                    bytes.fromhex(salt), _int(body, "count", 0, MAX_ENTRIES),
                    _blob(body.get("snapshot"), chunk_size, "snapshot"), tuple(deltas), raw)


def verify(trust: TrustStore, data: bytes, now: dt.datetime, reinstall: bool = False,
           same_as: tuple[int, str] | None = None) -> Manifest:
    """A new manifest, or TrustError naming the check it failed. The floor is the version
    installed last (reset when the allowlist role's keys rotate). `reinstall`: nothing is
    installed (a corrupt version was taken out, agent/allowlist/verify.py), so the version
    at the floor is wanted again. `same_as`: (version, snapshot digest) of the version taken
    out; exactly that content is taken again even under an expired root (it brings nothing
    new: the station trusted it before), so a damaged card can heal while the next root is late."""
    try:
        body = trust.verify_new(ROLE, data)
    except TrustError as exc:
        if exc.check != "root expired" or same_as is None:
            raise
        body = trust.verify(ROLE, data)
        again = parse(body, data)
        if (again.version, again.snapshot.sha256) != same_as:
            raise
    manifest = parse(body, data)
    floor = trust.floor(ROLE)
    if manifest.version < floor:
        raise TrustError("rollback", f"version {manifest.version} < {floor} in force")
    if manifest.version == floor and not reinstall:
        raise TrustError("already current", f"version {manifest.version}")
    if now >= manifest.expires:
        raise TrustError("expired", f"manifest expired {manifest.expires.isoformat()}")
    return manifest


def chunk_digests(data: bytes, chunk_size: int) -> list[str]:
    return [hashlib.sha256(data[i:i + chunk_size]).hexdigest() for i in range(0, len(data), chunk_size)]


def blob_body(data: bytes, chunk_size: int) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data),
            "chunks": chunk_digests(data, chunk_size)}


def manifest_body(version: int, created: dt.datetime, expires: dt.datetime, salt: bytes, count: int,
                  snapshot: bytes, deltas: list[tuple[int, int, bytes]], chunk_size: int = DEFAULT_CHUNK
                  ) -> dict[str, Any]:
    return {"_type": ROLE, "version": version, "created": created.isoformat(), "expires": expires.isoformat(),
            "salt": salt.hex(), "count": count, "chunk_size": chunk_size,
            "snapshot": blob_body(snapshot, chunk_size),
            "deltas": [{"from": a, "to": b, **blob_body(d, chunk_size)} for a, b, d in deltas]}
