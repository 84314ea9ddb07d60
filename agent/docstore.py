"""Holds the signed documents in force and persists them atomically beside the journal.

A new document must verify, parse, and carry a higher version than the one in force;
otherwise it is rejected with the failed check named, and the current one keeps serving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.documents import ALLOWLIST_KIND, POLICY_KIND, AllowList, DocumentError, QuotaPolicy
from agent.signing import SignatureError, load_public_key_hex, verify_document


@dataclass(frozen=True)
class UpdateResult:
    kind: str
    accepted: bool
    version: int
    detail: str  # why it was rejected, or "installed" / "already current"


def atomic_write(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over, fsync the directory: a power cut leaves old or new."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DocumentStore:
    def __init__(self, data_dir: Path, trusted_keys: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.trusted: dict[str, Ed25519PublicKey] = {
            kid: load_public_key_hex(hexkey) for kid, hexkey in trusted_keys.items()
        }
        self.allowlist: AllowList | None = None
        self.policy: QuotaPolicy | None = None

    def path(self, kind: str) -> Path:
        return self.data_dir / f"{kind}.signed"

    def load_saved(self) -> list[UpdateResult]:
        """At boot: re-verify what was saved; a corrupt file is reported, not trusted."""
        results = []
        for kind in (ALLOWLIST_KIND, POLICY_KIND):
            path = self.path(kind)
            if path.exists():
                results.append(self.offer(kind, path.read_bytes(), persist=False))
        return results

    def offer(self, kind: str, data: bytes, persist: bool = True) -> UpdateResult:
        try:
            body = verify_document(data, kind, self.trusted)
            doc: AllowList | QuotaPolicy
            doc = AllowList.from_body(body) if kind == ALLOWLIST_KIND else QuotaPolicy.from_body(body)
        except (SignatureError, DocumentError) as exc:
            return UpdateResult(kind, False, 0, str(exc))
        current = self.allowlist if kind == ALLOWLIST_KIND else self.policy
        if current is not None:
            if doc.version < current.version:
                return UpdateResult(kind, False, doc.version,
                                    f"rollback: version {doc.version} < {current.version} in force")
            if doc.version == current.version:
                return UpdateResult(kind, False, doc.version, "already current")
        if persist:
            atomic_write(self.path(kind), data)
        if isinstance(doc, AllowList):
            self.allowlist = doc
        else:
            self.policy = doc
        return UpdateResult(kind, True, doc.version, "installed")
