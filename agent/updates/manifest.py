"""The signed software release manifest: which agent, deploy and firmware files, exactly.

Body (signed under the trust root's `software` role, agent/trust/root.py):

    {"_type": "software", "version": "0.2.0", "sequence": 2, "created", "expires",
     "min_agent_version": "0.1.0", "firmware_version": 2, "chunk_size",
     "files": [{"path": "wheels/spbu_edge-0.2.0-py3-none-any.whl", "kind": "wheel",
                "sha256", "length", "chunks": [sha256 of each chunk]}, ...],
     "migrations": {"config": [{"op": "set"|"rename"|"delete", ...}],
                    "journal": {"up": [sql...], "down": [sql...] | null}},
     "rollout": {"percent": 1, "step": 1, "halted": false}}

`sequence` is what only goes forward (the `software` floor is the sequence last committed
healthy); `version` is what people read. Files are content-addressed in chunks like the
allow-list (agent/allowlist/chunks.py); every file's bytes are pinned by this one signature, so a
release can never be assembled from parts of two (mix-and-match). `rollout` is re-signed
by headquarters as the rollout advances or halts (a new `step`, same sequence).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from agent.allowlist.manifest import Blob, _blob, blob_body
from agent.trust.root import TrustError, TrustStore, parse_time

ROLE = "software"
KINDS = ("wheel", "deploy", "firmware")
DEFAULT_CHUNK = 256 * 1024
MAX_FILES = 256
_VERSION = re.compile(r"^(\d{1,6})\.(\d{1,6})\.(\d{1,6})$")
_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*(/[A-Za-z0-9_][A-Za-z0-9._+-]*)*$")
CONFIG_OPS = ("set", "rename", "delete")


def parse_version(text: object) -> tuple[int, int, int]:
    match = _VERSION.match(text) if isinstance(text, str) else None
    if match is None:
        raise TrustError("malformed", f"version {text!r} must look like 1.2.3")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def cohort_bucket(station_id: str) -> int:
    """0..99, stable for a station: the 1 % cohort is bucket 0, the 10 % buckets 0-9 ..."""
    digest = hashlib.sha256(b"spbu-rollout\n" + station_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


@dataclass(frozen=True)
class ReleaseFile:
    path: str
    kind: str
    blob: Blob


@dataclass(frozen=True)
class Rollout:
    percent: int
    step: int
    halted: bool

    def includes(self, station_id: str) -> bool:
        return not self.halted and cohort_bucket(station_id) < self.percent


@dataclass(frozen=True)
class ReleaseManifest:
    version: str
    sequence: int
    created: dt.datetime
    expires: dt.datetime
    min_agent_version: str
    firmware_version: int
    files: tuple[ReleaseFile, ...]
    config_migration: tuple[dict[str, Any], ...]
    journal_up: tuple[str, ...]
    journal_down: tuple[str, ...] | None  # None: the journal migration cannot be undone
    rollout: Rollout
    raw: bytes

    def of_kind(self, kind: str) -> list[ReleaseFile]:
        return [f for f in self.files if f.kind == kind]

    def blobs(self) -> list[Blob]:
        return [f.blob for f in self.files]


def _int(body: dict[str, Any], name: str, minimum: int = 0, maximum: int = 2**53) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise TrustError("malformed", f"{name} must be an integer in [{minimum}, {maximum}]")
    return value


def _files(raw: object, chunk_size: int) -> tuple[ReleaseFile, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FILES:
        raise TrustError("malformed", f"files must be a list of 1..{MAX_FILES}")
    out: list[ReleaseFile] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise TrustError("malformed", f"files[{i}] must be an object")
        path, kind = item.get("path"), item.get("kind")
        if not isinstance(path, str) or not _PATH.match(path) or ".." in path.split("/") or len(path) > 200:
            raise TrustError("malformed", f"files[{i}].path {path!r} is not a safe relative path")
        if kind not in KINDS:
            raise TrustError("malformed", f"files[{i}].kind must be one of {', '.join(KINDS)}")
        out.append(ReleaseFile(path, str(kind), _blob(item, chunk_size, f"files[{i}]")))
    if len({f.path for f in out}) != len(out):
        raise TrustError("malformed", "files lists a path twice")
    if not any(f.kind == "wheel" for f in out):
        raise TrustError("malformed", "a release carries at least the agent's wheel")
    return tuple(out)


def _config_ops(raw: object) -> tuple[dict[str, Any], ...]:
    if not isinstance(raw, list):
        raise TrustError("malformed", "migrations.config must be a list")
    for i, op in enumerate(raw):
        if not isinstance(op, dict) or op.get("op") not in CONFIG_OPS or not isinstance(op.get("key"), str):
            raise TrustError("malformed", f"migrations.config[{i}] needs op in {CONFIG_OPS} and a key")
        if op["op"] == "rename" and not isinstance(op.get("to"), str):
            raise TrustError("malformed", f"migrations.config[{i}]: rename needs 'to'")
        if op["op"] == "set" and "value" not in op:
            raise TrustError("malformed", f"migrations.config[{i}]: set needs 'value'")
    return tuple(raw)


def _sql_list(raw: object, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(s, str) and s.strip() for s in raw):
        raise TrustError("malformed", f"{name} must be a list of SQL statements")
    return tuple(raw)


def _rollout(raw: object) -> Rollout:
    if not isinstance(raw, dict) or not isinstance(raw.get("halted", False), bool):
        raise TrustError("malformed", "rollout must be {percent, step, halted}")
    return Rollout(_int(raw, "percent", 0, 100), _int(raw, "step", 0), bool(raw.get("halted", False)))


def parse(body: dict[str, Any], raw: bytes) -> ReleaseManifest:
    if body.get("_type") != ROLE:
        raise TrustError("wrong type", f"expected {ROLE!r}")
    version = body.get("version")
    parse_version(version)
    parse_version(body.get("min_agent_version"))
    chunk_size = _int(body, "chunk_size", 1024, 1024 * 1024)
    migrations = body.get("migrations", {})
    if not isinstance(migrations, dict):
        raise TrustError("malformed", "migrations must be an object")
    journal = migrations.get("journal", {"up": [], "down": []})
    if not isinstance(journal, dict):
        raise TrustError("malformed", "migrations.journal must be {up, down}")
    down = None if journal.get("down") is None else _sql_list(journal.get("down"), "migrations.journal.down")
    return ReleaseManifest(
        str(version), _int(body, "sequence", 1), parse_time(body.get("created"), "created"),
        parse_time(body.get("expires"), "expires"), str(body["min_agent_version"]),
        _int(body, "firmware_version", 0, 255), _files(body.get("files"), chunk_size),
        _config_ops(migrations.get("config", [])), _sql_list(journal.get("up", []), "migrations.journal.up"),
        down, _rollout(body.get("rollout", {"percent": 100, "step": 0})), raw)


def verify(trust: TrustStore, data: bytes, now: dt.datetime) -> ReleaseManifest:
    """A release newer than the one committed, or TrustError naming the failed check.

    A manifest of another role (an allow-list key, a command key) fails the signature
    check: only the `software` role's keys and threshold count."""
    manifest = parse(trust.verify(ROLE, data), data)
    floor = trust.floor(ROLE)
    if manifest.sequence < floor:
        raise TrustError("rollback", f"release sequence {manifest.sequence} < {floor} in force")
    if manifest.sequence == floor:
        raise TrustError("already current", f"release {manifest.version}")
    if now >= manifest.expires:
        raise TrustError("expired", f"release manifest expired {manifest.expires.isoformat()}")
    return manifest


def file_body(path: str, kind: str, data: bytes, chunk_size: int) -> dict[str, Any]:
    return {"path": path, "kind": kind, **blob_body(data, chunk_size)}


def manifest_body(version: str, sequence: int, created: dt.datetime, expires: dt.datetime,
                  files: list[dict[str, Any]], min_agent_version: str = "0.1.0", firmware_version: int = 0,
                  chunk_size: int = DEFAULT_CHUNK, migrations: dict[str, Any] | None = None,
                  rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"_type": ROLE, "version": version, "sequence": sequence, "created": created.isoformat(),
            "expires": expires.isoformat(), "min_agent_version": min_agent_version,
            "firmware_version": firmware_version, "chunk_size": chunk_size, "files": files,
            "migrations": migrations or {"config": [], "journal": {"up": [], "down": []}},
            "rollout": rollout or {"percent": 100, "step": 0, "halted": False}}
