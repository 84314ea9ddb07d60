"""The station's allow-list on disk: versions side by side, one `current` symlink.

    <dir>/v000000000042/store.bin       the store file of version 42 (or the base of a
                                        layered version: agent/allowlist/layers.py)
    <dir>/v000000000042/manifest.json   its signed manifest
    <dir>/current -> v000000000042      swapped by rename(2): old or new, never neither
    <dir>/chunks/<sha256>               downloaded chunks, each verified before it is kept

Installing writes the new version in a temporary directory, fsyncs every file and the
directory, renames it into place, then swaps the symlink; a power cut at any instant
leaves `current` pointing at a complete, verified version, and the temporary directory
is removed at the next start.

A delta chain is installed as runs on top of the current base, not as a rewritten store:
the new version directory hard-links the base and the runs it keeps (no data written)
and adds the new delta as a run, as fetched. Tiers bound the runs a lookup asks: when
more than `tier0` daily runs pile up they are composed into one level-1 run; when more
than `tier1` level-1 runs pile up, base and runs are compacted into a new base. Before
the switch the merged content's SHA-256 must equal the manifest's snapshot digest, as for
a snapshot. Chunks are written without fsync: they are re-hashed before use, and those a
prompt install consumes and deletes never reach the card at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.allowlist import manifest as manifests
from agent.allowlist.chunks import ChunkStore
from agent.allowlist.layers import LAYERS_FILE, LayeredStore, Layers, RunInfo, run_name
from agent.allowlist.manifest import Blob, DeltaRef, Manifest
from agent.allowlist.store import AllowListStore
from agent.durable import fsync_dir
from agent.trust.documents import Vehicle
from agent.trust.root import TrustError, TrustStore

KEEP_VERSIONS = 2
TIER0 = 6  # daily runs before they are composed into one level-1 run
TIER1 = 6  # level-1 runs before base and runs are compacted into a new base


@dataclass
class SignedAllowList:
    """A verified manifest and its mmap-opened store: what eligibility asks."""

    manifest: Manifest
    store: AllowListStore | LayeredStore

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def created(self) -> dt.datetime:
        return self.manifest.created

    @property
    def expires(self) -> dt.datetime:
        return self.manifest.expires

    @property
    def salt(self) -> bytes:
        return self.manifest.salt

    def lookup(self, vehicle_id: int) -> Vehicle | None:
        entry = self.store.lookup_class(vehicle_id)
        if entry is None:
            return None
        category, products, status = entry
        return Vehicle(vehicle_id, category, products, status, "")  # plates travel in the QR token

    def close(self) -> None:
        self.store.close()


def version_dir(root: Path, version: int) -> Path:
    return root / f"v{version:012d}"


class AllowListRepo:
    def __init__(self, root: Path, trust: TrustStore, tier0: int = TIER0, tier1: int = TIER1) -> None:
        self.root = root
        self.trust = trust
        self.tier0 = tier0
        self.tier1 = tier1
        self.last_install: dict[str, object] = {}  # timings of the last delta install
        self.chunks = root / "chunks"
        # Chunks are re-hashed before use and consumed within seconds: no fsync per chunk.
        self._chunk_store = ChunkStore(self.chunks, durable=False)
        for stale in root.glob("v*.tmp"):  # an install or compaction a power cut interrupted
            shutil.rmtree(stale, ignore_errors=True)

    # --- what is installed ----------------------------------------------------------------

    def open_current(self) -> SignedAllowList | None:
        """The installed version, re-checked cheaply: manifest signature, file size, header
        (a layered version: its runs chain from the base to the manifest's version)."""
        current = self.root / "current"
        if not current.exists():
            return None
        manifest_raw = (current / "manifest.json").read_bytes()
        manifest = manifests.parse(self.trust.verify(manifests.ROLE, manifest_raw), manifest_raw)
        layers = Layers.read(current)
        store: AllowListStore | LayeredStore
        if layers is not None:
            if (layers.version, layers.count) != (manifest.version, manifest.count):
                raise TrustError("mix-and-match", f"{LAYERS_FILE} and manifest are of different versions")
            store = LayeredStore.open(current, layers)
            return SignedAllowList(manifest, store)
        path = current / "store.bin"
        if path.stat().st_size != manifest.snapshot.length:
            raise TrustError("truncated", f"store is {path.stat().st_size} bytes, manifest says "
                                          f"{manifest.snapshot.length}")
        store = AllowListStore(path)
        if store.version != manifest.version or store.count != manifest.count:
            store.close()
            raise TrustError("mix-and-match", "store and manifest are of different versions")
        return SignedAllowList(manifest, store)

    def current_version(self) -> int | None:
        try:
            target = os.readlink(self.root / "current")
        except OSError:
            return None
        return int(target[1:]) if target.startswith("v") and target[1:].isdigit() else None

    # --- chunks -----------------------------------------------------------------------------

    def chunk_path(self, digest: str) -> Path:
        return self.chunks / digest

    def have_chunk(self, digest: str, length: int) -> bool:
        return self._chunk_store.have(digest, length)

    def put_chunk(self, digest: str, length: int, data: bytes) -> None:
        self._chunk_store.put(digest, length, data)

    def missing(self, blobs: list[Blob]) -> list[tuple[str, int]]:
        out = []
        for blob in blobs:
            for i, digest in enumerate(blob.chunks):
                if not self.have_chunk(digest, blob.chunk_length(i)):
                    out.append((digest, blob.chunk_length(i)))
        return out

    def assemble_to(self, blob: Blob, out: BinaryIO) -> None:
        """Copy a fetched blob's chunks to `out`, a chunk at a time, checking its digest."""
        digest = hashlib.sha256()
        length = 0
        for chunk_digest in blob.chunks:
            data = self.chunk_path(chunk_digest).read_bytes()
            digest.update(data)
            length += len(data)
            out.write(data)
        if length != blob.length:
            raise TrustError("truncated" if length < blob.length else "endless data",
                             f"assembled {length} bytes, declared {blob.length}")
        if digest.hexdigest() != blob.sha256:
            raise TrustError("mix-and-match", "chunks do not make up the declared content")

    # --- installing -------------------------------------------------------------------------

    def install_fetched(self, manifest: Manifest) -> None:
        """Install what the sync fetched: the delta chain as runs, or the snapshot."""
        chain = manifest.plan(self.current_version())
        if chain is None:
            tmp = self._fresh_tmp(manifest)
            with open(tmp / "store.bin", "wb") as out:
                self.assemble_to(manifest.snapshot, out)
                _sync(out)
            self._check_store(tmp / "store.bin", manifest)
            self._finish(tmp, manifest)
        else:
            from agent.allowlist.install import install_chain  # numpy: only when a delta comes

            install_chain(self, manifest, chain)

    def install(self, manifest: Manifest, data: bytes) -> None:
        """Install a whole store file held in memory (provisioning, tests)."""
        if len(data) != manifest.snapshot.length or hashlib.sha256(data).hexdigest() != manifest.snapshot.sha256:
            raise TrustError("mix-and-match", "store does not match the manifest's snapshot digest")
        tmp = self._fresh_tmp(manifest)
        with open(tmp / "store.bin", "wb") as out:
            out.write(data)
            _sync(out)
        self._finish(tmp, manifest)

    def _fresh_tmp(self, manifest: Manifest) -> Path:
        tmp = self.root / (version_dir(self.root, manifest.version).name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        return tmp

    @staticmethod
    def _check_store(path: Path, manifest: Manifest) -> None:
        with AllowListStore(path) as store:
            if store.version != manifest.version or store.count != manifest.count:
                raise TrustError("mix-and-match", "store header disagrees with the manifest")

    def _finish(self, tmp: Path, manifest: Manifest) -> None:
        """manifest.json beside the content, everything synced, then the atomic switch."""
        with open(tmp / "manifest.json", "wb") as out:
            out.write(manifest.raw)
            _sync(out)
        fsync_dir(tmp)
        final = version_dir(self.root, manifest.version)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        link_tmp = self.root / "current.tmp"
        link_tmp.unlink(missing_ok=True)
        os.symlink(final.name, link_tmp)
        os.replace(link_tmp, self.root / "current")
        fsync_dir(self.root)
        self.trust.raise_floor(manifests.ROLE, manifest.version)
        self._prune(manifest)

    def _prune(self, manifest: Manifest) -> None:
        """Keep the new version and the one before it (a delta base); chunks are spent.
        Runs and bases shared by hard links live on in the versions kept."""
        keep = {version_dir(self.root, manifest.version).name}
        others = sorted((p for p in self.root.glob("v*") if p.is_dir() and p.name not in keep
                         and not p.name.endswith(".tmp")), key=lambda p: p.stat().st_mtime)
        for old in others[:-(KEEP_VERSIONS - 1)] if KEEP_VERSIONS > 1 else others:
            shutil.rmtree(old, ignore_errors=True)
        for chunk in self.chunks.iterdir():
            chunk.unlink(missing_ok=True)


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


__all__ = ["AllowListRepo", "DeltaRef", "RunInfo", "SignedAllowList", "run_name", "version_dir"]
