"""The station's allow-list on disk: versions side by side, one `current` symlink.

    <dir>/v000000000042/store.bin       the store file of version 42
    <dir>/v000000000042/manifest.json   its signed manifest
    <dir>/current -> v000000000042      swapped by rename(2): old or new, never neither
    <dir>/chunks/<sha256>               downloaded chunks, each verified before it is kept

Installing writes the new version in a temporary directory, fsyncs every file and the
directory, renames it into place, then swaps the symlink; a power cut at any instant
leaves `current` pointing at a complete, verified version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agent.allowlist import manifest as manifests
from agent.allowlist.build import apply as apply_delta
from agent.allowlist.build import decode_delta, encode, load
from agent.allowlist.manifest import Blob, Manifest
from agent.allowlist.store import AllowListStore, StoreError
from agent.durable import atomic_write, fsync_dir
from agent.trust.documents import Vehicle
from agent.trust.root import TrustError, TrustStore

KEEP_VERSIONS = 2


@dataclass
class SignedAllowList:
    """A verified manifest and its mmap-opened store: what eligibility asks."""

    manifest: Manifest
    store: AllowListStore

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
    def __init__(self, root: Path, trust: TrustStore) -> None:
        self.root = root
        self.trust = trust
        self.chunks = root / "chunks"
        self.chunks.mkdir(parents=True, exist_ok=True)

    # --- what is installed ----------------------------------------------------------------

    def open_current(self) -> SignedAllowList | None:
        """The installed version, re-checked cheaply: manifest signature, file size, header."""
        current = self.root / "current"
        if not current.exists():
            return None
        manifest_raw = (current / "manifest.json").read_bytes()
        manifest = manifests.parse(self.trust.verify(manifests.ROLE, manifest_raw), manifest_raw)
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
        """A kept chunk counts only if it still hashes right (SD cards do rot)."""
        path = self.chunk_path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if len(data) == length and hashlib.sha256(data).hexdigest() == digest:
            return True
        path.unlink(missing_ok=True)
        return False

    def put_chunk(self, digest: str, length: int, data: bytes) -> None:
        """Keep a chunk that is exactly what the manifest declares, or raise naming why not."""
        if len(data) > length:
            raise TrustError("endless data", f"chunk {digest[:12]} is {len(data)} bytes, declared {length}")
        if len(data) < length:
            raise TrustError("truncated", f"chunk {digest[:12]} is {len(data)} bytes, declared {length}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise TrustError("chunk digest mismatch", f"chunk {digest[:12]} does not match its digest")
        atomic_write(self.chunk_path(digest), data)

    def missing(self, blobs: list[Blob]) -> list[tuple[str, int]]:
        out = []
        for blob in blobs:
            for i, digest in enumerate(blob.chunks):
                if not self.have_chunk(digest, blob.chunk_length(i)):
                    out.append((digest, blob.chunk_length(i)))
        return out

    def assemble(self, blob: Blob) -> bytes:
        data = b"".join(self.chunk_path(d).read_bytes() for d in blob.chunks)
        if len(data) != blob.length:
            raise TrustError("truncated" if len(data) < blob.length else "endless data",
                             f"assembled {len(data)} bytes, declared {blob.length}")
        if hashlib.sha256(data).hexdigest() != blob.sha256:
            raise TrustError("mix-and-match", "chunks do not make up the declared content")
        return data

    # --- installing -------------------------------------------------------------------------

    def build_new(self, manifest: Manifest) -> bytes:
        """The new store file, from the delta chain when that is what was fetched."""
        chain = manifest.plan(self.current_version())
        if chain is None:
            data = self.assemble(manifest.snapshot)
        else:
            table, version = load(version_dir(self.root, chain[0].from_version) / "store.bin")
            for ref in chain:
                try:
                    delta = decode_delta(self.assemble(ref.blob))
                except StoreError as exc:
                    raise TrustError("malformed", f"delta {ref.from_version}->{ref.to_version}: {exc}") from exc
                if (delta.from_version, delta.to_version) != (version, version + 1):
                    raise TrustError("replayed delta", f"delta {delta.from_version}->{delta.to_version} "
                                                       f"does not apply to version {version}")
                table = apply_delta(table, delta)
                version = delta.to_version
            data = encode(table, manifest.version)
        if len(data) != manifest.snapshot.length or hashlib.sha256(data).hexdigest() != manifest.snapshot.sha256:
            raise TrustError("mix-and-match", "result does not match the manifest's snapshot digest")
        return data

    def install(self, manifest: Manifest, data: bytes) -> None:
        final = version_dir(self.root, manifest.version)
        tmp = self.root / (final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, blob in (("store.bin", data), ("manifest.json", manifest.raw)):
            with open(tmp / name, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
        fsync_dir(tmp)
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
        """Keep the new version and the one before it (a delta base); chunks are spent."""
        keep = {version_dir(self.root, manifest.version).name}
        others = sorted((p for p in self.root.glob("v*") if p.is_dir() and p.name not in keep),
                        key=lambda p: p.stat().st_mtime)
        for old in others[:-(KEEP_VERSIONS - 1)] if KEEP_VERSIONS > 1 else others:
            shutil.rmtree(old, ignore_errors=True)
        for chunk in self.chunks.iterdir():
            chunk.unlink(missing_ok=True)
