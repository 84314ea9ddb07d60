"""The installed allow-list re-hashed in full against its signed manifest.

Opening a version at boot checks only what is cheap (the manifest's signature, the file
size, the header; agent/allowlist/repo.py), so a byte changed inside the entries (an SD
card going bad, or someone with the data directory) would be served. This module checks
the whole content: a plain version's `store.bin` by its SHA-256, a layered version (base
and runs, agent/allowlist/layers.py) by streaming the merged list through the same digest
(agent/allowlist/merge.py). Both must equal the manifest's snapshot digest, as at install.

It runs in the allow-list worker thread right after start (agent/allowlist/sync.py), not
before the first scan: the plain SHA-256 of a 50M list is ~0.5 s on x86 and 2-3 s on a
Pi 4, a layered one tens of seconds (the merge), both beyond the 2 s start-up budget. A
version found corrupt is taken out of service (`quarantine`) and fetched afresh. A
`manifest.json` that no longer verifies is corrupt too, unless it is intact and the content
is exactly what it names (the allowlist key rotated since: a new list replaces it). Boot
serves neither, and the sync takes headquarters' manifest of the same version again.

`spbu allowlist verify --station` uses the same check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.allowlist import manifest as manifests
from agent.allowlist.layers import LAYERS_FILE, Layers
from agent.allowlist.manifest import Manifest
from agent.allowlist.store import AllowListStore, StoreError
from agent.durable import atomic_write, fsync_dir
from agent.trust.root import TrustError, TrustStore, parse_envelope

BLOCK = 1 << 20  # hashlib drops the GIL for each block: the station's loop keeps running


@dataclass(frozen=True)
class Verdict:
    version: int
    ok: bool
    check: str = ""  # the failed check (TrustError names), "" when ok
    detail: str = ""
    seconds: float = 0.0
    # The snapshot digest of a manifest that verified: the content this station trusted, which
    # may be installed again even under an expired root (agent/allowlist/manifest.py).
    sha256: str = ""


def verify_content(directory: Path, manifest: Manifest) -> None:
    """Raise TrustError (or StoreError) unless the version in `directory` is, byte for
    byte, the snapshot the manifest signs."""
    layers = Layers.read(directory)
    if layers is not None:
        verify_layered(directory, layers, manifest)
        return
    path = directory / "store.bin"
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            length += len(block)
    if length != manifest.snapshot.length:
        raise TrustError("truncated" if length < manifest.snapshot.length else "endless data",
                         f"store is {length} bytes, manifest says {manifest.snapshot.length}")
    if digest.hexdigest() != manifest.snapshot.sha256:
        raise TrustError("mix-and-match", "store content does not match the manifest digest")
    with AllowListStore(path) as store:
        if store.version != manifest.version or store.count != manifest.count:
            raise TrustError("mix-and-match", "store header disagrees with the manifest")


def verify_layered(directory: Path, layers: Layers, manifest: Manifest) -> None:
    """A layered version: base and runs merged as a stream, hashed, compared (numpy)."""
    from agent.allowlist import install

    if (layers.version, layers.count) != (manifest.version, manifest.count):
        raise TrustError("mix-and-match", f"{LAYERS_FILE} and manifest are of different versions")
    install._bounded_heap()  # numpy's arrays given back after the check, as after an install
    try:
        install._verify(directory, layers.runs, manifest, layers.base_version)
    finally:
        install._give_back()


def check_current(root: Path, trust: TrustStore) -> Verdict | None:
    """The version `root/current` points at, checked in full (None: nothing installed, or
    a manifest that no longer verifies under the root in force while the content is
    exactly what it names: a rotated key, which boot already reported and which a new
    list replaces, not a damaged file)."""
    import time

    current = root / "current"
    try:
        directory = current.resolve(strict=True)  # one version, even if `current` moves on
    except OSError:
        return None
    started = time.perf_counter()
    try:
        raw = (directory / "manifest.json").read_bytes()
        manifest = manifests.parse(trust.verify(manifests.ROLE, raw), raw)
    except TrustError as exc:
        return _unverified(directory, raw, exc)
    except OSError as exc:
        return Verdict(_version_of(directory), False, "malformed", f"manifest.json unreadable: {exc}")
    return _content_verdict(directory, manifest, started)


def _content_verdict(directory: Path, manifest: Manifest, started: float, trusted: bool = True) -> Verdict:
    import time

    sha = manifest.snapshot.sha256 if trusted else ""
    try:
        verify_content(directory, manifest)
    except TrustError as exc:
        return Verdict(manifest.version, False, exc.check, str(exc), sha256=sha)
    except (StoreError, OSError, ValueError) as exc:
        return Verdict(manifest.version, False, "malformed", str(exc), sha256=sha)
    return Verdict(manifest.version, True, seconds=time.perf_counter() - started, sha256=sha)


def _unverified(directory: Path, raw: bytes, failure: TrustError) -> Verdict | None:
    """A manifest that does not verify under the root in force: corrupt unless it is intact
    (it parses, names this version) and the content is exactly what it names. Boot cannot
    open the version either way, so nothing of it is served; a corrupt one is taken out
    so that the same version is fetched again (the sync's `reinstall`)."""
    version = _version_of(directory)
    try:
        signed, _ = parse_envelope(raw)
        manifest = manifests.parse(signed, raw)
    except TrustError as exc:
        return Verdict(version, False, exc.check, f"manifest.json damaged ({failure}): {exc}")
    if manifest.version != version:
        return Verdict(version, False, "mix-and-match", f"manifest.json names version {manifest.version}")
    verdict = _content_verdict(directory, manifest, 0.0, trusted=False)
    if verdict.ok:
        return None  # a rotated key (or damage within the signature alone): not called corrupt
    return Verdict(version, False, verdict.check, f"manifest.json does not verify ({failure}); {verdict.detail}")


def _version_of(directory: Path) -> int:
    name = directory.name
    return int(name[1:]) if name.startswith("v") and name[1:].isdigit() else 0


def manifest_verifies(root: Path, trust: TrustStore) -> bool:
    """Whether the installed version's manifest verifies under the root in force (boot can
    open it). When it does not, the same version is wanted again (agent/allowlist/sync.py)."""
    try:
        trust.verify(manifests.ROLE, (root / "current" / "manifest.json").read_bytes())
    except (TrustError, OSError):
        return False
    return True


QUARANTINED = "quarantined.json"


def quarantine(root: Path, version: int, sha256: str = "") -> bool:
    """Take a corrupt version out of service: `current` removed (nothing is served, as
    when no list came yet), the version's directory deleted so that the next install is
    a full snapshot (a delta would build on the damaged base). `sha256`, the snapshot digest
    of its verified manifest, is kept: that content may come back under an expired root.
    False if `current` has moved on to another version meanwhile."""
    current = root / "current"
    try:
        target = os.readlink(current)
    except OSError:
        return False
    if target != f"v{version:012d}":
        return False
    if sha256:
        atomic_write(root / QUARANTINED, json.dumps({"version": version, "sha256": sha256}).encode())
    current.unlink()
    fsync_dir(root)
    shutil.rmtree(root / target, ignore_errors=True)
    return True


def quarantined(root: Path) -> tuple[int, str] | None:
    """(version, snapshot digest) of the version taken out, if its manifest had verified."""
    try:
        saved = json.loads((root / QUARANTINED).read_text())
        return int(saved["version"]), str(saved["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_quarantined(root: Path) -> None:
    (root / QUARANTINED).unlink(missing_ok=True)
