"""Holds the signed documents in force and persists them atomically beside the journal.

A new document must verify, parse, and carry a higher version than the one in force;
otherwise it is rejected with the failed check named, and the current one keeps serving.
The allow-list is a store synced by agent/allowlist/sync.py into `allowlist/`; the quota
policy is a signed document of the `policy` role.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.allowlist.repo import AllowListRepo, SignedAllowList
from agent.allowlist.store import StoreError
from agent.durable import atomic_write
from agent.trust.documents import ALLOWLIST_KIND, POLICY_KIND, DocumentError, QuotaPolicy
from agent.trust.root import TrustError, TrustStore
from agent.trust.signing import SignatureError, verify_document


@dataclass(frozen=True)
class UpdateResult:
    kind: str
    accepted: bool
    version: int
    detail: str  # why it was rejected, or "installed" / "already current"


class DocumentStore:
    def __init__(self, data_dir: Path, trusted_keys: dict[str, str], trust_root: Path | None = None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        state = data_dir / "trust.json"
        self.trust = (TrustStore.from_root_file(trust_root, state) if trust_root is not None
                      else TrustStore.from_keys(trusted_keys, state))
        self.repo = AllowListRepo(data_dir / "allowlist", self.trust)
        if self.trust.state_error:
            # A corrupt trust.json must not reopen rollbacks: the installed list's version is
            # a floor the station already reached.
            self.trust.raise_floor(ALLOWLIST_KIND, self.repo.current_version() or 0)
        self.allowlist: SignedAllowList | None = None
        self.policy: QuotaPolicy | None = None
        self._policy_role: object = None  # the policy role's keys when the policy in force was installed

    @property
    def trusted(self) -> dict[str, Ed25519PublicKey]:
        """The policy role's keys (kept for callers of the single-key era)."""
        return self.trust.keyring(POLICY_KIND)

    def reload_allowlist(self) -> UpdateResult:
        """Open what `allowlist/current` points at now (after boot, or after an install)."""
        try:
            fresh = self.repo.open_current()
        except (TrustError, StoreError, OSError, ValueError) as exc:
            return UpdateResult(ALLOWLIST_KIND, False, 0, f"installed list unusable: {exc}")
        if fresh is None:
            return UpdateResult(ALLOWLIST_KIND, False, 0, "no allow-list installed yet")
        old, self.allowlist = self.allowlist, fresh
        if old is not None:
            old.close()
        # The floor is raised by the install itself, never here: after a key rotation reset it,
        # a restart must not put it back from the version still on disk.
        return UpdateResult(ALLOWLIST_KIND, True, fresh.version, "installed")

    def drop_allowlist(self, version: int) -> bool:
        """Stop serving a version found corrupt on disk (agent/allowlist/verify.py): scans
        are refused as before any list came, until it is fetched again."""
        if self.allowlist is None or self.allowlist.version != version:
            return False  # a newer version, verified at its install, is in force already
        old, self.allowlist = self.allowlist, None
        old.close()
        return True

    def path(self, kind: str) -> Path:
        return self.data_dir / f"{kind}.signed"

    def load_saved(self) -> list[UpdateResult]:
        """At boot: re-verify what was saved; a corrupt file is reported, not trusted."""
        results = []
        if (self.data_dir / "allowlist" / "current").exists():
            results.append(self.reload_allowlist())
        path = self.path(POLICY_KIND)
        if path.exists():
            results.append(self.offer(POLICY_KIND, path.read_bytes(), persist=False))
        return results

    def _verify_policy(self, data: bytes, new: bool) -> dict[str, object]:
        if new:  # not the one saved at an earlier install: an expired root brings nothing new
            self.trust.check_fresh(POLICY_KIND)
        if b'"signatures"' in data:
            return self.trust.verify(POLICY_KIND, data)
        if self.trust.threshold(POLICY_KIND) > 1:
            raise TrustError("threshold not met", "a single-key envelope cannot meet the policy threshold")
        return verify_document(data, POLICY_KIND, self.trust.keyring(POLICY_KIND))

    def offer(self, kind: str, data: bytes, persist: bool = True) -> UpdateResult:
        if kind != POLICY_KIND:
            return UpdateResult(kind, False, 0, "the allow-list comes as a signed manifest and chunks "
                                                "(hq/v1/allowlist/manifest), not as one document")
        try:
            doc = QuotaPolicy.from_body(self._verify_policy(data, persist))
        except (SignatureError, DocumentError, TrustError) as exc:
            return UpdateResult(kind, False, 0, str(exc))
        current = self.policy
        role = (frozenset(self.trust.keyring(POLICY_KIND)), self.trust.threshold(POLICY_KIND))
        if current is not None and role == self._policy_role:  # new keys start afresh (fast-forward recovery)
            if doc.version < current.version:
                return UpdateResult(kind, False, doc.version,
                                    f"rollback: version {doc.version} < {current.version} in force")
            if doc.version == current.version:
                return UpdateResult(kind, False, doc.version, "already current")
        if persist:
            atomic_write(self.path(kind), data)
        self.policy = doc
        self._policy_role = role
        return UpdateResult(kind, True, doc.version, "installed")
