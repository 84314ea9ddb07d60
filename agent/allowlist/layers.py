"""A layered allow-list: a base store with delta runs on top, looked up newest first.

A daily delta is installed as a run beside the base instead of rewriting the whole store
(281 MB at 50M entries, every day, on an SD card). The version directory then holds:

    store.bin                   the base: the store file of an older version (hard link)
    run-<from>-<to>.bin         delta runs, oldest first (hard links from the version before)
    run-<from>-<to>.filter      each run's two-probe bitmap: most lookups skip the run
    layers.json                 {"base_version", "count", "runs": [{"file", "from", "to", "level"}]}

A lookup asks each run's filter (two bit probes), the runs whose filter answers yes
(newest first; a tombstone there means "removed"), then the base. Pure Python on mmaps,
like the base store; no numpy here. Merging runs and compaction live in
agent/allowlist/merge.py and agent/allowlist/repo.py.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.allowlist.store import MAX_HEADER, AllowListStore, Entry, StoreError, check_class

LAYERS_FILE = "layers.json"
FILTER_MAGIC = b"SPBUFL1\n"
FILTER_HEAD = 16


@dataclass(frozen=True)
class RunInfo:
    file: str
    from_version: int
    to_version: int
    level: int  # 0: one daily delta as fetched; 1: several composed by a tier merge

    @property
    def filter_file(self) -> str:
        return self.file[:-len(".bin")] + ".filter"

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "from": self.from_version, "to": self.to_version, "level": self.level}


@dataclass(frozen=True)
class Layers:
    base_version: int
    count: int
    runs: tuple[RunInfo, ...]  # oldest first

    @classmethod
    def read(cls, directory: Path) -> Layers | None:
        path = directory / LAYERS_FILE
        if not path.exists():
            return None
        try:
            body = json.loads(path.read_bytes())
            runs = tuple(RunInfo(str(r["file"]), int(r["from"]), int(r["to"]), int(r["level"]))
                         for r in body["runs"])
            layers = cls(int(body["base_version"]), int(body["count"]), runs)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{LAYERS_FILE} is malformed: {exc}") from exc
        version = layers.base_version
        for run in runs:
            if run.from_version != version or run.to_version <= version or "/" in run.file:
                raise StoreError(f"{LAYERS_FILE}: runs do not chain from the base")
            version = run.to_version
        return layers

    @property
    def version(self) -> int:
        return self.runs[-1].to_version if self.runs else self.base_version

    def to_bytes(self) -> bytes:
        body = {"base_version": self.base_version, "count": self.count, "runs": [r.as_json() for r in self.runs]}
        return json.dumps(body, sort_keys=True, indent=1).encode()


def run_name(from_version: int, to_version: int) -> str:
    return f"run-{from_version:012d}-{to_version:012d}.bin"


class DeltaRun:
    """One run: a delta file (class table with `null` = removed) and its filter."""

    def __init__(self, path: Path, filter_path: Path, info: RunInfo) -> None:
        self.info = info
        self.store = AllowListStore(path)
        try:
            head = self.store._mm[:MAX_HEADER + 12]
            (length,) = struct.unpack_from("<I", head, 8)
            body = json.loads(head[12:12 + length])
            raw = body.get("delta_classes")
            if body.get("kind") != "delta" or not isinstance(raw, list):
                raise StoreError(f"{path.name} is not a delta")
            if (body.get("from_version"), self.store.version) != (info.from_version, info.to_version):
                raise StoreError(f"{path.name} joins other versions than {LAYERS_FILE} says")
            self.classes: list[Entry | None] = [None if c is None else check_class(c) for c in raw]
            self._filter, self._s1, self._s2, self._mask = _open_filter(filter_path)
        except (StoreError, ValueError, OSError):
            self.store.close()
            raise

    def find(self, vehicle_id: int) -> tuple[bool, Entry | None]:
        """(in this run, its class or None when the run removes it)."""
        f = self._filter
        i = (vehicle_id >> self._s1) + FILTER_HEAD * 8
        if not (f[i >> 3] >> (i & 7)) & 1:
            return False, None
        j = ((vehicle_id >> self._s2) & self._mask) + FILTER_HEAD * 8
        if not (f[j >> 3] >> (j & 7)) & 1:
            return False, None
        index = self.store.class_index(vehicle_id)
        if index is None:
            return False, None
        if index >= len(self.classes):
            raise StoreError("delta entry refers to a missing class")
        return True, self.classes[index]

    def close(self) -> None:
        self.store.close()
        self._filter.close()


def _open_filter(path: Path) -> tuple[mmap.mmap, int, int, int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    (fb,) = struct.unpack_from("<I", mm, len(FILTER_MAGIC)) if size >= FILTER_HEAD else (0,)
    if mm[:len(FILTER_MAGIC)] != FILTER_MAGIC or not 10 <= fb <= 32 or size != FILTER_HEAD + (1 << fb) // 8:
        mm.close()
        raise StoreError(f"{path.name} is not a run filter")
    mm.madvise(mmap.MADV_RANDOM)
    return mm, 64 - fb, 64 - 2 * fb, (1 << fb) - 1


class LayeredStore:
    """What eligibility asks: the same lookup as AllowListStore, over base + runs."""

    def __init__(self, base: AllowListStore, runs: list[DeltaRun], layers: Layers) -> None:
        self.base = base
        self._runs = runs[::-1]  # newest first
        self.layers = layers
        self.version = layers.version
        self.count = layers.count
        self.classes = base.classes

    @classmethod
    def open(cls, directory: Path, layers: Layers) -> LayeredStore:
        base = AllowListStore(directory / "store.bin")
        runs: list[DeltaRun] = []
        try:
            if base.version != layers.base_version:
                raise StoreError(f"base is version {base.version}, {LAYERS_FILE} says {layers.base_version}")
            for info in layers.runs:
                runs.append(DeltaRun(directory / info.file, directory / info.filter_file, info))
        except (StoreError, OSError):
            base.close()
            for run in runs:
                run.close()
            raise
        return cls(base, runs, layers)

    @property
    def run_count(self) -> int:
        return len(self._runs)

    def lookup_class(self, vehicle_id: int) -> Entry | None:
        for run in self._runs:
            found, entry = run.find(vehicle_id)
            if found:
                return entry
        return self.base.lookup_class(vehicle_id)

    def __contains__(self, vehicle_id: object) -> bool:
        return isinstance(vehicle_id, int) and self.lookup_class(vehicle_id) is not None

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        self.base.close()
        for run in self._runs:
            run.close()
