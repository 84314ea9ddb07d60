"""Installing a delta chain as runs on a layered list, with tier merges and compaction
(numpy; the sync's worker thread). See agent/allowlist/repo.py for the on-disk scheme.

Every step writes into the new version's temporary directory; the version before stays
untouched until the atomic switch, so a power cut in the middle of a merge or a
compaction leaves `current` on the complete old version and the temporary directory is
removed at the next start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from agent.allowlist.layers import LAYERS_FILE, Layers, RunInfo, run_name
from agent.allowlist.manifest import DeltaRef, Manifest
from agent.allowlist.merge import Merge, MergeMismatch, Run, build_filter, digest, stream
from agent.allowlist.store import StoreError
from agent.killpoints import killpoint
from agent.trust.root import TrustError


def install_chain(repo: Any, manifest: Manifest, chain: list[DeltaRef]) -> None:
    _bounded_heap()
    try:
        _install_chain(repo, manifest, chain)
    finally:
        _give_back()


def _bounded_heap() -> None:
    """glibc raises its mmap threshold after large blocks are freed, so numpy's arrays would
    then come from the heap and stay in the agent's RSS after the install; pin it."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: arrays above it are mmapped, given back on free


def _give_back() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _libc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


def _install_chain(repo: Any, manifest: Manifest, chain: list[DeltaRef]) -> None:
    started = time.perf_counter()
    current = repo.root / "current"
    tmp = repo._fresh_tmp(manifest)
    layers = Layers.read(current) or _plain(current)
    os.link(current / "store.bin", tmp / "store.bin")  # the base: a hard link, no data written
    for info in layers.runs:
        os.link(current / info.file, tmp / info.file)
        os.link(current / info.filter_file, tmp / info.filter_file)
    runs = list(layers.runs)
    for ref in chain:
        runs.append(_add_delta(repo, tmp, ref, runs[-1].to_version if runs else layers.base_version))
    if _outweigh(tmp, runs):  # runs half as big as the base: a new base is cheaper
        _compact(tmp, runs, manifest)
        runs, compacted = [], True
    else:
        runs, compacted = _tiers(repo, tmp, runs, manifest, layers.base_version)
    verify_s = 0.0
    if compacted:
        (tmp / LAYERS_FILE).unlink(missing_ok=True)
    else:
        _filters(tmp, runs)
        checked = time.perf_counter()
        _verify(tmp, runs, manifest, layers.base_version)
        verify_s = time.perf_counter() - checked
        _write(tmp / LAYERS_FILE, Layers(layers.base_version, manifest.count, tuple(runs)).to_bytes())
    repo._finish(tmp, manifest)
    # What the benchmark reports: writing the runs durably vs checking the full digest.
    repo.last_install = {"apply_s": round(time.perf_counter() - started - verify_s, 4),
                         "verify_s": round(verify_s, 4), "runs": len(runs), "compacted": compacted}


def _plain(current: Path) -> Layers:
    run = Run(current / "store.bin")
    try:
        return Layers(run.version, run.count, ())
    finally:
        run.close()


def _outweigh(tmp: Path, runs: list[RunInfo]) -> bool:
    opened = [Run(tmp / "store.bin")] + [Run(tmp / r.file) for r in runs]
    counts = [run.count for run in opened]
    for run in opened:
        run.close()
    return sum(counts[1:]) * 2 > counts[0]


def _add_delta(repo: Any, tmp: Path, ref: DeltaRef, version: int) -> RunInfo:
    """The fetched delta, as it is, becomes a run (plus its filter)."""
    info = RunInfo(run_name(ref.from_version, ref.to_version), ref.from_version, ref.to_version, 0)
    with _durable(tmp / info.file) as out:
        repo.assemble_to(ref.blob, out)
    try:
        run = Run(tmp / info.file)
    except (StoreError, ValueError) as exc:
        raise TrustError("malformed", f"delta {ref.from_version}->{ref.to_version}: {exc}") from exc
    try:
        if not run.is_delta or (run.from_version, run.version) != (version, version + 1):
            raise TrustError("replayed delta", f"delta {run.from_version}->{run.version} "
                                               f"does not apply to version {version}")
    finally:
        run.close()
    return info


def _filters(tmp: Path, runs: list[RunInfo]) -> None:
    """Each run that stays gets its filter (composed runs got theirs when written)."""
    for info in runs:
        if not (tmp / info.filter_file).exists():
            run = Run(tmp / info.file)
            try:
                _write(tmp / info.filter_file, build_filter(run))
            finally:
                run.close()


def _tiers(repo: Any, tmp: Path, runs: list[RunInfo], manifest: Manifest,
           base_version: int) -> tuple[list[RunInfo], bool]:
    level0 = [r for r in runs if r.level == 0]
    if len(level0) > repo.tier0 and sum(1 for r in runs if r.level == 1) >= repo.tier1:
        # The composed run would go into a new base at once: compact straight away rather
        # than write (and sync) a level-1 run only to merge it (~28 MB of card at 50M).
        _compact(tmp, runs, manifest)
        return [], True
    if len(level0) > repo.tier0:
        composed = _compose(tmp, level0)
        runs = [r for r in runs if r.level != 0] + [composed]
    if sum(1 for r in runs if r.level == 1) > repo.tier1:
        _compact(tmp, runs, manifest)
        return [], True
    return runs, False


def _compose(tmp: Path, level0: list[RunInfo]) -> RunInfo:
    """Several daily runs -> one level-1 run (newest wins, removals kept)."""
    info = RunInfo(run_name(level0[0].from_version, level0[-1].to_version), level0[0].from_version,
                   level0[-1].to_version, 1)
    opened = [Run(tmp / r.file) for r in level0]
    try:
        with _durable(tmp / info.file) as out:
            stream(Merge(None, opened), info.to_version, lambda data: _put(out, data), from_version=info.from_version)
    finally:
        for run in opened:
            run.close()
    killpoint("allowlist_composed")
    run = Run(tmp / info.file)
    try:
        _write(tmp / info.filter_file, build_filter(run))
    finally:
        run.close()
    for r in level0:
        (tmp / r.file).unlink()
        (tmp / r.filter_file).unlink(missing_ok=True)
    return info


def _compact(tmp: Path, runs: list[RunInfo], manifest: Manifest) -> None:
    """Base and every run -> a new base: the snapshot of this version, checked by digest."""
    import hashlib

    hasher = hashlib.sha256()
    base = Run(tmp / "store.bin")
    opened = [Run(tmp / r.file) for r in runs]
    try:
        with _durable(tmp / "store.new") as out:
            def write(data: bytes) -> None:
                hasher.update(data)
                out.write(data)
                killpoint("allowlist_compacting")
            stream(Merge(base, opened), manifest.version, write, manifest.count)
    except MergeMismatch as exc:
        raise TrustError("mix-and-match", str(exc)) from exc
    finally:
        base.close()
        for run in opened:
            run.close()
    if hasher.hexdigest() != manifest.snapshot.sha256:
        raise TrustError("mix-and-match", "result does not match the manifest's snapshot digest")
    os.replace(tmp / "store.new", tmp / "store.bin")  # in tmp only: the old version keeps its base
    for r in runs:
        (tmp / r.file).unlink()
        (tmp / r.filter_file).unlink(missing_ok=True)


def _verify(tmp: Path, runs: Sequence[RunInfo], manifest: Manifest, base_version: int) -> None:
    """The merged content must be the manifest's snapshot, byte for byte (streamed)."""
    base = Run(tmp / "store.bin")
    opened: list[Run] = []
    try:
        opened.extend(Run(tmp / r.file) for r in runs)
        if base.version != base_version:
            raise TrustError("mix-and-match", "base is not the version the runs start from")
        sha, length = digest(Merge(base, opened), manifest.version, manifest.count)
    except MergeMismatch as exc:
        raise TrustError("mix-and-match", str(exc)) from exc
    finally:
        base.close()
        for run in opened:
            run.close()
    if (sha, length) != (manifest.snapshot.sha256, manifest.snapshot.length):
        raise TrustError("mix-and-match", "result does not match the manifest's snapshot digest")


@contextmanager
def _durable(path: Path) -> Iterator[BinaryIO]:
    with open(path, "wb", buffering=1 << 20) as out:
        yield out
        out.flush()
        os.fsync(out.fileno())


def _put(out: BinaryIO, data: bytes) -> None:
    out.write(data)


def _write(path: Path, data: bytes) -> None:
    with _durable(path) as out:
        out.write(data)
