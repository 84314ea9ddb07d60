"""Root of trust, TUF-style: offline root keys certify the online keys of each role.

A root document lists Ed25519 keys and, per role (`root`, `allowlist`, `policy`, `tokens`,
`commands`; optional `usage`, `software`), which keys may sign and how many must agree.
A root without `software` (signed release manifests, agent/updates/manifest.py) trusts no
release, so stations provisioned before fleet updates keep loading theirs. Every signed
document is an envelope {"signed": {...}, "signatures": [{"keyid", "sig"}]}; a signature covers
b"spbu-tuf/" + signed["_type"] + b"\\n" + canonical JSON of `signed`, so a document of one
role can never pass for another.

A new root must be version N+1, signed by a threshold of the current root's root keys and
a threshold of its own. When a role's keys change, that role's version floor is reset: the
recovery from a fast-forward attack (a stolen online key signing version 10**9) that TUF
prescribes. Other streams take `keyring(role)` and `threshold(role)`.

An expired root vouches for nothing new (TUF): once the station's judged time (`clock`,
set by the station from agent/clock.py) is past the root's expiry, `verify_new` and
`check_fresh` refuse every new document of its roles with the check "root expired", until
headquarters publishes the next root (still accepted: it is the way out). What was
installed before keeps serving under its own rules (the allow-list's freeze policy).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.durable import atomic_write
from agent.trust.signing import SignatureError, key_id, load_public_key_hex, public_key_hex

ROLES = ("root", "allowlist", "policy", "tokens", "commands")
# Roles a root may name; when it does not, another role stands in (agent/national_usage.py:
# the `usage` feed falls back to the `policy` keys; agent/trust/acks.py: `acks`, the collectors'
# acknowledgement key, falls back to `commands`), or nobody (`software`: a root without
# it trusts no release, agent/updates/manifest.py).
OPTIONAL_ROLES = ("usage", "software", "acks")
NOBODY_WHEN_ABSENT = ("software",)
ALL_ROLES = ROLES + OPTIONAL_ROLES
MAX_METADATA_BYTES = 4 * 1024 * 1024


class TrustError(ValueError):
    """A trust check failed. `check` is a stable name for it (alerts and tests use it)."""

    def __init__(self, check: str, detail: str = "") -> None:
        super().__init__(f"{check}: {detail}" if detail else check)
        self.check = check


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _message(signed: dict[str, Any]) -> bytes:
    return b"spbu-tuf/" + str(signed.get("_type", "")).encode() + b"\n" + canonical(signed)


def sign(signed: dict[str, Any], keys: list[Ed25519PrivateKey]) -> bytes:
    """An envelope of `signed` with one signature per key."""
    message = _message(signed)
    signatures = [{"keyid": key_id(k.public_key()), "sig": base64.b64encode(k.sign(message)).decode()}
                  for k in keys]
    return canonical({"signed": signed, "signatures": signatures})


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if len(data) > MAX_METADATA_BYTES:
        raise TrustError("endless data", f"metadata larger than {MAX_METADATA_BYTES} bytes")
    try:
        envelope = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TrustError("malformed", "envelope is not JSON") from exc
    if not isinstance(envelope, dict):
        raise TrustError("malformed", "envelope is not an object")
    signed, signatures = envelope.get("signed"), envelope.get("signatures")
    if not isinstance(signed, dict) or not isinstance(signatures, list):
        raise TrustError("malformed", "envelope needs 'signed' and 'signatures'")
    return signed, [s for s in signatures if isinstance(s, dict)]


def check_signatures(signed: dict[str, Any], signatures: list[dict[str, Any]],
                     keyring: dict[str, Ed25519PublicKey], threshold: int, role: str) -> None:
    """Raise TrustError naming the failure unless `threshold` distinct known keys signed."""
    message = _message(signed)
    valid: set[str] = set()
    bad = unknown = 0
    for entry in signatures:
        kid = entry.get("keyid")
        if not isinstance(kid, str) or kid not in keyring:
            unknown += 1
            continue
        try:
            sig = base64.b64decode(str(entry.get("sig", "")), validate=True)
            keyring[kid].verify(sig, message)
        except (InvalidSignature, binascii.Error, ValueError):
            bad += 1
            continue
        valid.add(kid)
    if len(valid) >= threshold:
        return
    if bad:
        raise TrustError("bad signature", f"{role}: {bad} signature(s) do not verify")
    if not valid and unknown:
        raise TrustError("unknown key", f"{role}: signed only by keys the root does not list for it")
    raise TrustError("threshold not met", f"{role}: {len(valid)} of {threshold} required signatures")


def parse_time(value: object, name: str) -> dt.datetime:
    if not isinstance(value, str):
        raise TrustError("malformed", f"{name} must be an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise TrustError("malformed", f"{name} must be an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise TrustError("malformed", f"{name} needs a UTC offset")
    return parsed


@dataclass(frozen=True)
class Role:
    keyids: tuple[str, ...]
    threshold: int


@dataclass(frozen=True)
class Root:
    version: int
    expires: dt.datetime
    keys: dict[str, Ed25519PublicKey]
    roles: dict[str, Role]
    raw: bytes = b""

    @classmethod
    def from_signed(cls, signed: dict[str, Any], raw: bytes = b"") -> Root:
        if signed.get("_type") != "root":
            raise TrustError("malformed", "not a root document")
        version = signed.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TrustError("malformed", "root version must be an integer >= 1")
        keys: dict[str, Ed25519PublicKey] = {}
        raw_keys = signed.get("keys")
        if not isinstance(raw_keys, dict):
            raise TrustError("malformed", "root 'keys' must be an object")
        for kid, spec in raw_keys.items():
            if not isinstance(spec, dict) or spec.get("keytype") != "ed25519":
                raise TrustError("malformed", f"key {kid}: only ed25519 keys")
            try:
                public = load_public_key_hex(str(spec.get("public", "")))
            except SignatureError as exc:
                raise TrustError("malformed", f"key {kid}: {exc}") from exc
            if key_id(public) != kid:
                raise TrustError("malformed", f"key {kid}: id does not match the key")
            keys[kid] = public
        roles: dict[str, Role] = {}
        raw_roles = signed.get("roles")
        if not isinstance(raw_roles, dict):
            raise TrustError("malformed", "root 'roles' must be an object")
        for name in ALL_ROLES:
            spec = raw_roles.get(name)
            if name in OPTIONAL_ROLES and spec is None:
                if name in NOBODY_WHEN_ABSENT:
                    roles[name] = Role((), 1)
                continue
            if not isinstance(spec, dict):
                raise TrustError("malformed", f"root lacks role {name!r}")
            keyids, threshold = spec.get("keyids"), spec.get("threshold")
            if not isinstance(keyids, list) or not all(isinstance(k, str) and k in keys for k in keyids):
                raise TrustError("malformed", f"role {name}: keyids must name listed keys")
            if not isinstance(threshold, int) or isinstance(threshold, bool) or not threshold >= 1:
                raise TrustError("malformed", f"role {name}: threshold must be >= 1")
            if name != "root" and threshold > len(set(keyids)):
                raise TrustError("malformed", f"role {name}: threshold larger than its key count")
            roles[name] = Role(tuple(keyids), threshold)
        return cls(version, parse_time(signed.get("expires"), "expires"), keys, roles, raw)

    def keyring(self, role: str) -> dict[str, Ed25519PublicKey]:
        return {kid: self.keys[kid] for kid in self.roles[role].keyids}

    def verify(self, role: str, data: bytes) -> dict[str, Any]:
        """The signed body of an envelope of `role`, checked against this root."""
        signed, signatures = parse_envelope(data)
        if signed.get("_type") != role:
            raise TrustError("wrong type", f"expected {role!r}, got {signed.get('_type')!r}")
        check_signatures(signed, signatures, self.keyring(role), self.roles[role].threshold, role)
        return signed


def root_body(version: int, expires: dt.datetime, role_keys: dict[str, list[Ed25519PublicKey]],
              thresholds: dict[str, int]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    roles: dict[str, Any] = {}
    for role in ALL_ROLES:
        if role in OPTIONAL_ROLES and not role_keys.get(role):
            continue
        ids = []
        for public in role_keys[role]:
            kid = key_id(public)
            keys[kid] = {"keytype": "ed25519", "public": public_key_hex(public)}
            ids.append(kid)
        roles[role] = {"keyids": ids, "threshold": thresholds.get(role, 1)}
    return {"_type": "root", "version": version, "expires": expires.isoformat(), "keys": keys, "roles": roles}


@dataclass
class TrustStore:
    """The root in force and the version floor of each role, persisted in one file."""

    root: Root
    state_path: Path | None = None
    floors: dict[str, int] = field(default_factory=dict)
    legacy: bool = False
    state_error: str = ""  # the saved state was unreadable (agent/docstore.py restores the floors)
    clock: Callable[[], dt.datetime] | None = None  # the time expiry is judged by (None: not judged)

    @classmethod
    def from_root_file(cls, path: Path, state_path: Path | None = None) -> TrustStore:
        """Trust the provisioned root (self-signed by a threshold of its root keys), or the
        newer root saved in `state_path` by earlier rotations."""
        initial = load_root(path.read_bytes())
        store = cls(initial, state_path)
        if state_path is not None and state_path.exists():
            try:
                state = json.loads(state_path.read_text())
                saved = load_root(base64.b64decode(state["root"]))
                if saved.version >= initial.version:
                    store.root = saved
                store.floors = {str(k): int(v) for k, v in state.get("floors", {}).items()}
            except (ValueError, KeyError, TypeError, TrustError) as exc:
                # The provisioned root, and the floors rebuilt from what is installed
                # (DocumentStore); rotations come back with the retained root messages.
                store.state_error = f"{state_path}: {exc}"
        return store

    @classmethod
    def from_keys(cls, trusted_keys: dict[str, str], state_path: Path | None = None) -> TrustStore:
        """Compatibility with configs that list `trusted_keys`: every role is any one of them,
        and the root cannot rotate (it has no root keys)."""
        keys = {kid: load_public_key_hex(hexkey) for kid, hexkey in trusted_keys.items()}
        roles = {name: Role(tuple(keys), 1) for name in ROLES if name not in ("root", *OPTIONAL_ROLES)}
        roles["root"] = Role((), 1)
        roles["software"] = Role((), 1)  # code updates need a real root, never a flat key list
        far = dt.datetime.max.replace(tzinfo=dt.UTC)
        store = cls(Root(1, far, keys, roles), state_path, legacy=True)
        if state_path is not None and state_path.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                store.floors = {str(k): int(v) for k, v in json.loads(state_path.read_text())["floors"].items()}
        return store

    def keyring(self, role: str) -> dict[str, Ed25519PublicKey]:
        return self.root.keyring(role)

    def threshold(self, role: str) -> int:
        return self.root.roles[role].threshold

    def verify(self, role: str, data: bytes) -> dict[str, Any]:
        return self.root.verify(role, data)

    def check_fresh(self, role: str) -> None:
        """Raise TrustError("root expired") if the root in force has expired: its `role`
        keys may not bring anything new."""
        if self.clock is not None and self.clock() >= self.root.expires:
            raise TrustError("root expired", f"root of trust v{self.root.version} expired "
                                             f"{self.root.expires.isoformat()}: no new {role} document is "
                                             f"trusted until headquarters publishes root v{self.root.version + 1}")

    def verify_new(self, role: str, data: bytes) -> dict[str, Any]:
        """`verify` for a document offered now (not one installed earlier)."""
        self.check_fresh(role)
        return self.verify(role, data)

    def floor(self, role: str) -> int:
        return self.floors.get(role, 0)

    def raise_floor(self, role: str, version: int) -> None:
        if version > self.floor(role):
            self.floors[role] = version
            self._save()

    def update_root(self, data: bytes, now: dt.datetime | None = None) -> list[str]:
        """Install root N+1; return the roles whose keys changed (their floors are reset)."""
        signed, signatures = parse_envelope(data)
        new = Root.from_signed(signed, data)
        old = self.root
        if new.version <= old.version:
            raise TrustError("rollback", f"root version {new.version} <= {old.version} in force")
        if new.version != old.version + 1:
            raise TrustError("version gap", f"root version {new.version}, expected {old.version + 1}")
        check_signatures(signed, signatures, old.keyring("root"), old.roles["root"].threshold, "root (old keys)")
        check_signatures(signed, signatures, new.keyring("root"), new.roles["root"].threshold, "root (new keys)")
        if (now or dt.datetime.now(dt.UTC)) >= new.expires:
            raise TrustError("expired", f"root version {new.version} expired {new.expires.isoformat()}")
        changed = [r for r in ALL_ROLES if r != "root" and old.roles.get(r) != new.roles.get(r)
                   and (r not in old.roles or r not in new.roles
                        or (set(old.roles[r].keyids), old.roles[r].threshold) != (set(new.roles[r].keyids),
                                                                                  new.roles[r].threshold))]
        self.root = new
        for role in changed:
            self.floors.pop(role, None)  # fast-forward recovery: the new keys start afresh
        self._save()
        return changed

    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"root": base64.b64encode(self.root.raw).decode(), "floors": self.floors}
        atomic_write(self.state_path, canonical(state))


def load_root(data: bytes) -> Root:
    """A root that vouches for itself: signed by a threshold of the root keys it lists."""
    signed, signatures = parse_envelope(data)
    root = Root.from_signed(signed, data)
    check_signatures(signed, signatures, root.keyring("root"), root.roles["root"].threshold, "root")
    return root
