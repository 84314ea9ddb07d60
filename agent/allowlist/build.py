"""Building, decoding and diffing allow-list stores with numpy (headquarters and delta apply).

A delta is itself a store file whose class table may hold `null`, meaning "remove this id";
every other entry is an upsert. Its header also names the versions it joins, so a delta
from another base is refused before anything is touched.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.allowlist.store import (
    CLASS_BITS,
    MAGIC,
    MAX_CLASSES,
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
CHUNK = 1 << 15  # entries per packing step: temporaries stay in the CPU cache, bounded at any size
REMOVED = "removed"


@dataclass
class Table:
    """Sorted unique ids with a class index each, and the class table."""

    ids: U64
    cls: U8
    classes: list[Entry]

    def __len__(self) -> int:
        return int(self.ids.size)

    def as_dict(self) -> dict[int, Entry]:
        return {int(i): self.classes[int(c)] for i, c in zip(self.ids, self.cls, strict=True)}


def present(cls: U8) -> list[int]:
    """The class indexes in use (bincount: numpy's hash-based unique is slow at this size)."""
    return [int(i) for i in np.flatnonzero(np.bincount(cls, minlength=1))] if cls.size else []


def member(sorted_ids: U64, ids: U64) -> npt.NDArray[np.bool_]:
    """Which of `ids` are in the sorted array `sorted_ids`."""
    if not sorted_ids.size:
        return np.zeros(ids.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
    return np.asarray(sorted_ids[pos] == ids)


def canonical(ids: U64, cls: U8, classes: list[Entry]) -> Table:
    """Sort by id, reject duplicates and zero, keep only used classes in canonical order."""
    if ids.size and int(ids.min()) == 0:
        raise StoreError("vehicle id 0 is reserved")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    cls = cls[order]
    if ids.size > 1 and bool((ids[1:] == ids[:-1]).any()):
        raise StoreError("duplicate vehicle id")
    used = sorted({classes[i] for i in present(cls)}, key=class_order)
    if len(used) > MAX_CLASSES:
        raise StoreError(f"more than {MAX_CLASSES} (category, products, status) combinations")
    remap = np.zeros(max(len(classes), 1), dtype=np.uint8)
    for old, entry in enumerate(classes):
        if entry in used:
            remap[old] = used.index(entry)
    return Table(ids, remap[cls], used)


def from_entries(entries: Iterable[tuple[int, str, int, str]]) -> Table:
    ids: list[int] = []
    cls: list[int] = []
    classes: list[Entry] = []
    index: dict[Entry, int] = {}
    for vid, category, products, status in entries:
        if not 0 < vid < 2**64:
            raise StoreError(f"vehicle id {vid} is not a 64-bit id")
        entry = check_class([category, products, status])
        if entry not in index:
            index[entry] = len(classes)
            classes.append(entry)
        ids.append(vid)
        cls.append(index[entry])
    if len(classes) > 255:
        raise StoreError("too many distinct classes")
    return canonical(np.array(ids, dtype=np.uint64), np.array(cls, dtype=np.uint8), classes)


def pack(fields: U64, width: int) -> bytes:
    """Fixed-width big-endian bit packing, a megabyte-sized slice at a time."""
    out = []
    for start in range(0, fields.size, CHUNK):
        chunk = fields[start:start + CHUNK].astype(">u8").view(np.uint8).reshape(-1, 8)
        bits = np.unpackbits(chunk, axis=1)[:, 64 - width:]
        out.append(np.packbits(bits.reshape(-1)).tobytes())
    return b"".join(out)


def unpack(data: bytes | memoryview, count: int, width: int) -> U64:
    if width <= 57:  # a field plus its bit offset fits one 8-byte window: gather, shift, mask
        return _unpack_windows(data, count, width)
    result = np.empty(count, dtype=np.uint64)
    for start in range(0, count, CHUNK):
        end = min(count, start + CHUNK)
        b0 = start * width // 8  # CHUNK is a multiple of 8: slices start on a byte
        b1 = (end * width + 7) // 8
        bits = np.unpackbits(np.frombuffer(data[b0:b1], dtype=np.uint8))[:(end - start) * width]
        wide = np.zeros((end - start, 64), dtype=np.uint8)
        wide[:, 64 - width:] = bits.reshape(-1, width)
        result[start:end] = np.packbits(wide, axis=1).view(">u8").ravel()
    return result


def _unpack_windows(data: bytes | memoryview, count: int, width: int) -> U64:
    raw = np.frombuffer(data, dtype=np.uint8)
    need = (count * width + 7) // 8 + 8
    if raw.size < need:
        raise StoreError("entries section truncated")
    windows = np.lib.stride_tricks.as_strided(raw, shape=(need - 7, 8), strides=(1, 1), writeable=False)
    mask = np.uint64((1 << width) - 1)
    result = np.empty(count, dtype=np.uint64)
    for start in range(0, count, CHUNK):
        bits = np.arange(start, min(count, start + CHUNK), dtype=np.uint64) * np.uint64(width)
        words = np.ascontiguousarray(windows[(bits >> np.uint64(3)).astype(np.int64)]).view(">u8").ravel()
        shift = np.uint64(64 - width) - (bits & np.uint64(7))
        result[start:start + bits.size] = (words.astype(np.uint64) >> shift) & mask
    return result


def encode(table: Table, version: int, extra: dict[str, Any] | None = None) -> bytes:
    """The store file for a canonical table. Equal content gives equal bytes."""
    layout = Layout.for_count(len(table))
    head, sections = header_bytes(layout, table.classes, version)
    if extra:  # deltas name their versions; stores do not need it
        head = _with_extra(head, extra, layout, table.classes, version)
        sections = _sections_of(head)
    ids = table.ids
    high = (ids >> np.uint64(layout.remainder_bits)).astype(np.int64)
    counts = np.bincount(high, minlength=layout.buckets) if ids.size else np.zeros(layout.buckets, np.int64)
    cum = np.zeros(layout.buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=cum[1:])
    marks = np.minimum(np.arange(layout.groups + 1, dtype=np.int64) * layout.group, layout.buckets)
    checkpoints = cum[marks].astype("<u4").tobytes()
    high += np.arange(ids.size, dtype=np.int64)
    bits = np.zeros(layout.count + layout.buckets, dtype=np.uint8)
    bits[high] = 1
    del high
    unary = np.packbits(bits).tobytes() + b"\0" * PAD
    del bits
    fields = ids & np.uint64((1 << layout.remainder_bits) - 1)
    fields <<= np.uint64(CLASS_BITS)
    fields |= table.cls
    entries = pack(fields, layout.width) + b"\0" * PAD
    parts = [head]
    for name, blob in (("checkpoints", checkpoints), ("unary", unary), ("entries", entries)):
        offset, size = sections[name]
        if len(blob) != size:
            raise StoreError(f"internal: section {name} is {len(blob)} bytes, expected {size}")
        parts.append(b"\0" * (offset - sum(map(len, parts))))
        parts.append(blob)
    return b"".join(parts)


def _with_extra(head: bytes, extra: dict[str, Any], layout: Layout, classes: list[Any],
                version: int) -> bytes:
    # Deltas carry extra header fields (their versions and the removal class); re-lay out.
    sizes = layout.section_sizes()
    sections: dict[str, list[int]] = {}
    for _ in range(2):
        body = {"format": 1, "version": version, "count": layout.count, "bucket_bits": layout.bucket_bits,
                "group": layout.group, "width": layout.width, "classes": classes, "sections": sections, **extra}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        offset = (len(MAGIC) + 4 + len(raw) + 16 + 7) & ~7
        sections = {}
        for name, size in zip(("checkpoints", "unary", "entries"), sizes, strict=True):
            sections[name] = [offset, size]
            offset = (offset + size + 7) & ~7
    body["sections"] = sections
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return (MAGIC + struct.pack("<I", len(raw)) + raw).ljust(sections["checkpoints"][0], b"\0")


def _sections_of(head: bytes) -> dict[str, list[int]]:
    (length,) = struct.unpack_from("<I", head, 8)
    sections: dict[str, list[int]] = json.loads(head[12:12 + length])["sections"]
    return sections


def _raw_header(data: bytes | memoryview) -> dict[str, Any]:
    if bytes(data[:8]) != MAGIC:
        raise StoreError("not an allow-list store (bad magic)")
    (length,) = struct.unpack_from("<I", data, 8)
    if length > 65536 or 12 + length > len(data):
        raise StoreError("header length out of range")
    try:
        body: dict[str, Any] = json.loads(bytes(data[12:12 + length]))
    except ValueError as exc:
        raise StoreError("header is not JSON") from exc
    if not isinstance(body, dict):
        raise StoreError("header is not an object")
    return body


def decode(data: bytes | memoryview) -> tuple[Table, int]:
    """A store file back into its table (and version). Checks every structural invariant."""
    header = Header.parse(bytes(data[:65536 + 12]), len(data))
    return _decode_sections(data, header.layout, header.sections), header.version


def _decode_sections(data: bytes | memoryview, layout: Layout, sections: dict[str, Any]) -> Table:
    n = layout.count
    u0, _ = sections["unary"]
    ubits = np.unpackbits(np.frombuffer(data[u0:u0 + (n + layout.buckets + 7) // 8], dtype=np.uint8))
    ubits = ubits[:n + layout.buckets]
    ones = np.flatnonzero(ubits)
    if ones.size != n:
        raise StoreError("unary section does not hold one bit per entry")
    del ubits
    # In place where possible: at 50M each fresh temporary is 400 MB of page faults.
    ones -= np.arange(n, dtype=np.int64)
    ids = ones.view(np.uint64)
    ids <<= np.uint64(layout.remainder_bits)
    e0, _ = sections["entries"]
    fields = unpack(data[e0:], n, layout.width)
    cls = (fields & np.uint64(MAX_CLASSES - 1)).astype(np.uint8)
    fields >>= np.uint64(CLASS_BITS)
    ids |= fields
    del fields
    if n > 1 and not bool((ids[1:] > ids[:-1]).all()):
        raise StoreError("entries are not strictly ascending")
    return Table(ids, cls, [])


def load(path: Path) -> tuple[Table, int]:
    data = path.read_bytes()
    header = Header.parse(data[:65536 + 12], len(data))
    table = _decode_sections(data, header.layout, header.sections)
    table.classes = header.classes
    if table.cls.size and int(table.cls.max()) >= len(table.classes):
        raise StoreError("entry refers to a missing class")
    return table, header.version


# --- deltas -----------------------------------------------------------------------------


@dataclass
class Delta:
    from_version: int
    to_version: int
    ids: U64
    cls: U8  # index into classes; a None class removes the id
    classes: list[Entry | None]

    def __len__(self) -> int:
        return int(self.ids.size)


def diff(old: Table, new: Table, from_version: int, to_version: int) -> Delta:
    """The upserts and removals that turn `old` into `new`."""
    pos = np.searchsorted(new.ids, old.ids)
    pos_c = np.minimum(pos, max(len(new) - 1, 0))
    in_new = (pos < len(new)) & (new.ids[pos_c] == old.ids) if len(new) else np.zeros(len(old), bool)
    removed = old.ids[~in_new]
    old_names = [old.classes[int(c)] for c in range(len(old.classes))]
    new_names = [new.classes[int(c)] for c in range(len(new.classes))]
    # An old entry is unchanged when its id is in new with the same class.
    same = np.zeros(len(new), dtype=bool)
    if len(new) and len(old):
        translate = np.array([new_names.index(c) if c in new_names else 255 for c in old_names] or [255],
                             dtype=np.int16)
        hit = pos_c[in_new]
        same[hit] = translate[old.cls[in_new]] == new.cls[hit]
    upsert_ids = new.ids[~same]
    upsert_cls = new.cls[~same]
    classes: list[Entry | None] = [*new_names, None]
    ids = np.concatenate([upsert_ids, removed])
    cls = np.concatenate([upsert_cls, np.full(removed.size, len(new_names), dtype=np.uint8)])
    order = np.argsort(ids, kind="stable")
    return Delta(from_version, to_version, ids[order], cls[order].astype(np.uint8), classes)


def encode_delta(delta: Delta) -> bytes:
    used = present(delta.cls)
    classes = [delta.classes[i] for i in used]
    if len(classes) > MAX_CLASSES:
        raise StoreError("delta has too many classes")
    remap = np.zeros(max(len(delta.classes), 1), dtype=np.uint8)
    for new_index, old_index in enumerate(used):
        remap[old_index] = new_index
    table = Table(delta.ids, remap[delta.cls], [])
    extra = {"kind": "delta", "from_version": delta.from_version,
             "delta_classes": [list(c) if c else None for c in classes]}
    return encode(table, delta.to_version, extra)


def decode_delta(data: bytes) -> Delta:
    body = _raw_header(data)
    if body.get("kind") != "delta":
        raise StoreError("not a delta")
    raw_classes = body.get("delta_classes")
    from_version = body.get("from_version")
    if not isinstance(raw_classes, list) or len(raw_classes) > MAX_CLASSES or not isinstance(from_version, int):
        raise StoreError("bad delta header")
    classes: list[Entry | None] = [None if c is None else check_class(c) for c in raw_classes]
    header = Header.parse(bytes(data[:65536 + 12]), len(data))  # extra header keys are ignored
    table = _decode_sections(data, header.layout, header.sections)
    if table.cls.size and int(table.cls.max()) >= len(classes):
        raise StoreError("delta entry refers to a missing class")
    return Delta(from_version, header.version, table.ids, table.cls, classes)


def apply(old: Table, delta: Delta) -> Table:
    """old + delta -> new, in O(n) numpy passes (no full re-sort)."""
    names = list(old.classes)
    for c in delta.classes:
        if c is not None and c not in names:
            names.append(c)
    removal = np.array([c is None for c in delta.classes] or [False], dtype=bool)
    to_names = np.array([names.index(c) if c is not None else 255 for c in delta.classes] or [255],
                        dtype=np.uint8)
    is_removal = removal[delta.cls]
    pos = np.searchsorted(old.ids, delta.ids)
    pos_c = np.minimum(pos, max(len(old) - 1, 0))
    present = (pos < len(old)) & (old.ids[pos_c] == delta.ids) if len(old) else np.zeros(len(delta), bool)
    if bool((is_removal & ~present).any()):
        raise StoreError("delta removes an id that is not in the list (wrong base)")
    keep = np.ones(len(old), dtype=bool)
    keep[pos_c[is_removal & present]] = False
    cls = old.cls.copy()
    change = present & ~is_removal
    cls[pos_c[change]] = to_names[delta.cls[change]]
    kept_ids = old.ids[keep]
    kept_cls = cls[keep]
    add = ~present & ~is_removal
    add_ids = delta.ids[add]
    at = np.searchsorted(kept_ids, add_ids)
    ids = np.insert(kept_ids, at, add_ids)
    new_cls = np.insert(kept_cls, at, to_names[delta.cls[add]])
    if len(names) > 255:
        raise StoreError("too many classes")
    return _compact(Table(ids, new_cls, names))


def _compact(table: Table) -> Table:
    used = sorted({table.classes[i] for i in present(table.cls)}, key=class_order)
    if len(used) > MAX_CLASSES:
        raise StoreError(f"more than {MAX_CLASSES} combinations")
    remap = np.zeros(max(len(table.classes), 1), dtype=np.uint8)
    for old, entry in enumerate(table.classes):
        if entry in used:
            remap[old] = used.index(entry)
    return Table(table.ids, remap[table.cls], used)


# --- files ------------------------------------------------------------------------------


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()

