"""Streaming merges of allow-list runs with numpy, in bounded memory (the sync's worker
thread; never the lookup path).

A *run* is a store file or a delta file (same container, docs/allowlist.md). A merge reads
a base store and delta runs (oldest first) one id range at a time (about `SPAN` entries),
the newest run winning for each id, and writes the result as one sequential byte stream:
either a store file byte-for-byte equal to `agent.allowlist.build.encode` of the merged table
(so its SHA-256 is the manifest's snapshot digest: verification, compaction), or, without
a base, a delta that composes the runs (tombstones kept: a tier merge of daily deltas).

Two passes: the first counts entries and builds the bucket sections (a few MB at 50M
entries), the second packs the entries. The geometry of a store result comes from the
count the signed manifest declares, so nothing is buffered but those small sections; a
result whose count or classes disagree is refused (`MergeMismatch`) and, for classes,
redone with the classes it really uses.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.allowlist.store import (
    CLASS_BITS,
    MAGIC,
    MAX_CLASSES,
    MAX_HEADER,
    PAD,
    Entry,
    Header,
    Layout,
    StoreError,
    check_class,
    class_order,
    header_bytes,
)

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
SPAN = 1 << 16  # entries per step: a few MB of temporaries at any list size (the agent's RSS budget)
TOMB = 255  # merged class index meaning "removed" (deltas only)
PACK_STEP = 1 << 15
FILTER_MAGIC = b"SPBUFL1\n"
FILTER_HEAD = 16


class MergeMismatch(StoreError):
    """The merged content is not what the manifest declares."""


class Run:
    """One store or delta file, decoded one id range at a time through an mmap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        head = bytes(self._mm[:MAX_HEADER + 12])
        self.header = Header.parse(head, size)
        (length,) = struct.unpack_from("<I", head, 8)
        body: dict[str, Any] = json.loads(head[12:12 + length])
        self.is_delta = body.get("kind") == "delta"
        self.from_version = int(body.get("from_version", -1))
        self.version = self.header.version
        self.classes: list[Entry | None] = (
            [None if c is None else check_class(c) for c in body.get("delta_classes", [])]
            if self.is_delta else list(self.header.classes))
        lay = self.header.layout
        self.layout = lay
        self.count = lay.count
        raw = np.frombuffer(self._mm, dtype=np.uint8)
        cp_off = self.header.sections["checkpoints"][0]
        self._cp = np.frombuffer(self._mm, dtype="<u4", count=lay.groups + 1, offset=cp_off)  # mapped, not copied
        u0, ulen = self.header.sections["unary"]
        e0, elen = self.header.sections["entries"]
        self._unary = raw[u0:u0 + ulen]
        self._entries = raw[e0:e0 + elen]

    def close(self) -> None:
        self._unary = self._entries = np.zeros(0, np.uint8)
        self._cp = np.zeros(0, "<u4")
        self._mm.close()

    def decode(self, lo: int, hi: int) -> tuple[U64, U8]:
        """Entries with lo <= id < hi (hi up to 2**64): ids and class indexes, ascending."""
        lay = self.layout
        if self.count == 0 or lo >= hi:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint8)
        b0, b1 = lo >> lay.remainder_bits, ((hi - 1) >> lay.remainder_bits) + 1
        g0, g1 = b0 // lay.group, -(-b1 // lay.group)
        e0, e1 = int(self._cp[g0]), int(self._cp[g1])
        if e1 < e0 or e1 > self.count:
            raise StoreError("checkpoint section corrupt")
        n = e1 - e0
        bit0 = g0 * lay.group + e0
        bit1 = min(g1 * lay.group, lay.buckets) + e1
        chunk = np.unpackbits(self._unary[bit0 >> 3:(bit1 + 7) >> 3])[bit0 & 7:(bit0 & 7) + bit1 - bit0]
        ones = np.flatnonzero(chunk)
        if ones.size != n:
            raise StoreError("unary section does not hold one bit per entry")
        buckets = (ones + bit0 - np.arange(e0, e1, dtype=np.int64)).astype(np.uint64)
        fields = fields_at(self._entries, e0, e1, lay.width)
        ids = (buckets << np.uint64(lay.remainder_bits)) | (fields >> np.uint64(CLASS_BITS))
        cls = (fields & np.uint64(MAX_CLASSES - 1)).astype(np.uint8)
        if n > 1 and not bool((ids[1:] > ids[:-1]).all()):
            raise StoreError("entries are not strictly ascending")
        keep = (ids >= np.uint64(lo)) & (ids <= np.uint64(hi - 1))
        return ids[keep], cls[keep]


def fields_at(raw: U8, e0: int, e1: int, width: int) -> U64:
    """Fixed-width big-endian fields e0..e1 of a bit stream (any width up to 64)."""
    if e1 <= e0:
        return np.zeros(0, np.uint64)
    if raw.size < ((e1 * width + 7) >> 3) + PAD:
        raise StoreError("entries section truncated")
    windows = np.lib.stride_tricks.as_strided(raw, shape=(raw.size - 8, 9), strides=(1, 1), writeable=False)
    bits = np.arange(e0, e1, dtype=np.uint64) * np.uint64(width)
    win = windows[(bits >> np.uint64(3)).astype(np.int64)]
    word = np.ascontiguousarray(win[:, :8]).view(">u8").ravel().astype(np.uint64)
    ninth = win[:, 8].astype(np.uint64)
    off = bits & np.uint64(7)
    combined: U64 = np.bitwise_or(np.left_shift(word, off), np.right_shift(ninth, np.uint64(8) - off))
    return np.right_shift(combined, np.uint64(64 - width))


class BitSink:
    """Concatenates bit arrays (one uint8 0/1 per bit) into bytes, MSB first."""

    def __init__(self, out: Callable[[bytes], None]) -> None:
        self._out = out
        self._carry = np.zeros(0, np.uint8)

    def bits(self, bits: U8) -> None:
        if self._carry.size:
            bits = np.concatenate([self._carry, bits])
        whole = bits.size & ~7
        if whole:
            self._out(np.packbits(bits[:whole]).tobytes())
        self._carry = bits[whole:].copy()

    def fields(self, values: U64, width: int) -> None:
        for start in range(0, values.size, PACK_STEP):
            part = values[start:start + PACK_STEP].astype(">u8").view(np.uint8).reshape(-1, 8)
            self.bits(np.unpackbits(part, axis=1)[:, 64 - width:].reshape(-1))

    def close(self) -> None:
        if self._carry.size:
            self._out(np.packbits(self._carry).tobytes())
        self._carry = np.zeros(0, np.uint8)


class Merge:
    """base (optional) + runs, oldest first, newest wins; as a store or as a delta."""

    def __init__(self, base: Run | None, runs: list[Run]) -> None:
        self.base = base
        self.runs = runs
        names: set[Entry] = set()
        for run in ([base] if base else []) + runs:
            names.update(c for c in run.classes if c is not None)
        self.classes: list[Entry] = sorted(names, key=class_order)
        self._maps = [self._map(run) for run in runs]
        self._base_map = self._map(base) if base else None
        self.keep_tombstones = base is None

    def _map(self, run: Run) -> U8:
        return np.array([TOMB if c is None else self.classes.index(c) for c in run.classes] or [TOMB],
                        dtype=np.uint8)

    def _updates(self, lo: int, hi: int) -> tuple[U64, U8]:
        ids_parts, cls_parts = [], []
        for run, cmap in zip(self.runs, self._maps, strict=True):
            ids, cls = run.decode(lo, hi)
            if cls.size and int(cls.max()) >= len(run.classes):
                raise StoreError("delta entry refers to a missing class")
            ids_parts.append(ids)
            cls_parts.append(cmap[cls])
        ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.uint64)
        cls = np.concatenate(cls_parts) if cls_parts else np.zeros(0, np.uint8)
        if len(ids_parts) > 1 and ids.size:
            order = np.argsort(ids, kind="stable")  # equal ids stay oldest first
            ids, cls = ids[order], cls[order]
            newest = np.ones(ids.size, dtype=bool)
            newest[:-1] = ids[1:] != ids[:-1]
            ids, cls = ids[newest], cls[newest]
        return ids, cls

    def chunk(self, lo: int, hi: int) -> tuple[U64, U8]:
        ids, cls = self._updates(lo, hi)
        if self.base is None:
            return ids, cls
        assert self._base_map is not None
        bids, bcls = self.base.decode(lo, hi)
        bcls = self._base_map[bcls]
        if not ids.size:
            return bids, bcls
        pos = np.searchsorted(bids, ids)
        posc = np.minimum(pos, max(bids.size - 1, 0))
        present = (pos < bids.size) & (bids[posc] == ids) if bids.size else np.zeros(ids.size, bool)
        keep = np.ones(bids.size, dtype=bool)
        keep[posc[present]] = False  # replaced or removed
        add = cls != TOMB
        kept_ids, kept_cls = bids[keep], bcls[keep]
        at = np.searchsorted(kept_ids, ids[add])
        return np.insert(kept_ids, at, ids[add]), np.insert(kept_cls, at, cls[add])

    def ranges(self, layout: Layout) -> Iterator[tuple[int, int]]:
        """Id ranges of about SPAN entries, each a whole number of the result's groups."""
        total = (self.base.count if self.base else 0) + sum(r.count for r in self.runs)
        steps = 1
        while steps * 2 * SPAN <= total and steps * 2 <= layout.groups:
            steps *= 2
        span = 1 << (64 - (steps.bit_length() - 1))
        for i in range(steps):
            yield i * span, (i + 1) * span


def _tally(merge: Merge, layout: Layout) -> tuple[int, list[int], bytes, bytes]:
    """Pass 1: count, classes in use, checkpoints and unary sections for `layout`."""
    unary_parts: list[bytes] = []
    sink = BitSink(unary_parts.append)
    checkpoints = np.zeros(layout.groups + 1, dtype="<u4")  # 2 MB at 50M entries
    used = np.zeros(256, dtype=np.int64)
    count = 0
    for lo, hi in merge.ranges(layout):
        ids, cls = merge.chunk(lo, hi)
        used += np.bincount(cls, minlength=256)
        b0 = lo >> layout.remainder_bits
        nb = min(((hi - 1) >> layout.remainder_bits) + 1, layout.buckets) - b0
        rel = (ids >> np.uint64(layout.remainder_bits)).astype(np.int64) - b0
        per_bucket = np.bincount(rel, minlength=nb)[:nb]
        bits = np.zeros(ids.size + nb, dtype=np.uint8)
        bits[rel + np.arange(ids.size, dtype=np.int64)] = 1
        sink.bits(bits)
        g0 = b0 // layout.group
        cum = np.cumsum(per_bucket)[layout.group - 1::layout.group]  # ranges are whole groups
        checkpoints[g0 + 1:g0 + 1 + cum.size] = (count + cum).astype("<u4")
        count += ids.size
    sink.close()
    checkpoints[-1] = count
    in_use = [int(i) for i in np.flatnonzero(used)]
    unary = b"".join(unary_parts)
    return count, in_use, checkpoints.tobytes(), unary + b"\0" * PAD


def stream(merge: Merge, version: int, out: Callable[[bytes], None], expected_count: int | None = None,
           from_version: int | None = None) -> tuple[int, list[Entry | None]]:
    """Write the merged file to `out`, in order. Returns (count, class table written)."""
    count = expected_count
    if count is None:  # a composed delta: count it first (runs are small)
        bound = Layout.for_count(min(sum(r.count for r in merge.runs), 2**32 - 1))
        count = sum(merge.chunk(lo, hi)[0].size for lo, hi in merge.ranges(bound))
    layout = Layout.for_count(count)
    real, in_use, checkpoints, unary = _tally(merge, layout)
    if real != count:
        raise MergeMismatch(f"merged list holds {real} entries, the manifest says {count}")
    table: list[Entry | None] = [merge.classes[i] if i != TOMB else None for i in in_use]
    if merge.keep_tombstones:
        if len(table) > MAX_CLASSES:
            raise StoreError("delta has too many classes")
        head = _delta_header(layout, table, version, from_version if from_version is not None else -1)
    else:
        if TOMB in in_use or len(table) > MAX_CLASSES:
            raise StoreError("merged store has removals or too many classes")
        head, _ = header_bytes(layout, [c for c in table if c is not None], version)
    remap = np.zeros(256, dtype=np.uint8)
    for new, old in enumerate(in_use):
        remap[old] = new
    sections = _sections(head)
    written = 0
    for name, blob in ((None, head), ("checkpoints", checkpoints), ("unary", unary)):
        if name is not None:
            out(b"\0" * (sections[name][0] - written))
            written = sections[name][0]
        out(blob)
        written += len(blob)
    out(b"\0" * (sections["entries"][0] - written))
    sink = BitSink(out)
    rmask = np.uint64((1 << layout.remainder_bits) - 1)
    for lo, hi in merge.ranges(layout):
        ids, cls = merge.chunk(lo, hi)
        fields = ((ids & rmask) << np.uint64(CLASS_BITS)) | remap[cls].astype(np.uint64)
        sink.fields(fields, layout.width)
    sink.close()
    out(b"\0" * PAD)
    return count, table


def _sections(head: bytes) -> dict[str, list[int]]:
    (length,) = struct.unpack_from("<I", head, 8)
    sections: dict[str, list[int]] = json.loads(head[12:12 + length])["sections"]
    return sections


def _delta_header(layout: Layout, classes: list[Entry | None], version: int, from_version: int) -> bytes:
    """A delta's header (as agent.allowlist.build.encode_delta lays it out)."""
    sizes = layout.section_sizes()
    sections: dict[str, list[int]] = {}
    body: dict[str, Any] = {}
    for _ in range(2):
        body = {"format": 1, "version": version, "count": layout.count, "bucket_bits": layout.bucket_bits,
                "group": layout.group, "width": layout.width, "classes": [], "sections": sections,
                "kind": "delta", "from_version": from_version,
                "delta_classes": [list(c) if c else None for c in classes]}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        offset = (len(MAGIC) + 4 + len(raw) + 16 + 7) & ~7
        sections = {}
        for name, size in zip(("checkpoints", "unary", "entries"), sizes, strict=True):
            sections[name] = [offset, size]
            offset = (offset + size + 7) & ~7
    body["sections"] = sections
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return (MAGIC + struct.pack("<I", len(raw)) + raw).ljust(sections["checkpoints"][0], b"\0")


def digest(merge: Merge, version: int, expected_count: int) -> tuple[str, int]:
    """SHA-256 and length of the merged store, without writing it anywhere."""
    hasher = hashlib.sha256()
    length = 0

    def out(data: bytes) -> None:
        nonlocal length
        hasher.update(data)
        length += len(data)

    stream(merge, version, out, expected_count)
    return hasher.hexdigest(), length


# --- per-run filters ------------------------------------------------------------------


def filter_bits(count: int) -> int:
    """log2 of the filter's size in bits: 16 to 32 bits per entry (two probes: ~0.4-1.4% of
    the ids a run does not hold pass its filter). With 12 runs in front of a 50M base, 8 to
    16 bits (2-5% each) sent a third of all lookups into some run's entries for nothing,
    and the p99 to 19-21 µs; the larger filters cost ~0.3x the delta more writes a cycle."""
    return max(10, min(32, (max(count, 1) - 1).bit_length() + 4))


def build_filter(run: Run) -> bytes:
    """Two-probe bitmap of every id in a run (tombstones too): most lookups skip the run."""
    fb = filter_bits(run.count)
    bitmap = np.zeros((1 << fb) // 8, dtype=np.uint8)
    mask = np.uint64((1 << fb) - 1)
    for lo, hi in Merge(None, [run]).ranges(Layout.for_count(run.count)):
        ids, _ = run.decode(lo, hi)
        for probe in (ids >> np.uint64(64 - fb), (ids >> np.uint64(64 - 2 * fb)) & mask):
            np.bitwise_or.at(bitmap, (probe >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (probe & np.uint64(7)).astype(np.uint8)))
    return FILTER_MAGIC + struct.pack("<I", fb).ljust(FILTER_HEAD - len(FILTER_MAGIC), b"\0") + bitmap.tobytes()
