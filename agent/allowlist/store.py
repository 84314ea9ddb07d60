"""The allow-list store: an exact, compact set of 64-bit vehicle ids opened by mmap.

File layout (all offsets in the header; see docs/allowlist.md):

    magic  b"SPBUAL1\\n"            8 bytes
    hlen   uint32 little-endian     length of the header JSON
    header JSON (sorted keys)       count, bucket_bits, group, width, classes, sections, version
    checkpoints  uint32 LE[groups+1]  entries before bucket g*group
    unary        bits, MSB first    per bucket: one 1-bit per entry, then a 0-bit
    entries      bits, MSB first    per entry, `width` bits: (id remainder << 4) | class index

An id splits into its top `bucket_bits` bits (the bucket) and the remaining bits. Buckets
average about one entry, so their boundaries cost ~1.7 bits per entry in the unary stream
(Elias-Fano's upper half); remainders are stored at fixed width. The per-entry value is a
4-bit index into the header's table of (category, products, status) combinations.

A lookup reads one checkpoint pair, ~20 bytes of unary bits and one or two entries: three
pages at most, and nothing is parsed at open but the header. This module is the station's
lookup path: pure Python, no numpy.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.domain import CATEGORIES, PRODUCTS, STATUS_ACTIVE, STATUS_SUSPENDED

MAGIC = b"SPBUAL1\n"
FORMAT = 1
CLASS_BITS = 4
MAX_CLASSES = 1 << CLASS_BITS
PAD = 8  # zero bytes after each bit section, so reads of a whole word never run off the end
MAX_HEADER = 64 * 1024
STATUSES = (STATUS_ACTIVE, STATUS_SUSPENDED)
ALL_PRODUCTS = sum(PRODUCTS.values())

Entry = tuple[str, int, str]  # (category, products bitmask, status)


class StoreError(ValueError):
    """The store file is malformed; the message names what is wrong."""


def check_class(value: Any) -> Entry:
    if not (isinstance(value, list | tuple) and len(value) == 3):
        raise StoreError("class must be [category, products, status]")
    category, products, status = value
    if category not in CATEGORIES:
        raise StoreError(f"unknown category {category!r}")
    if isinstance(products, bool) or not isinstance(products, int) or products & ~ALL_PRODUCTS or products < 0:
        raise StoreError(f"bad product mask {products!r}")
    if status not in STATUSES:
        raise StoreError(f"bad status {status!r}")
    return (str(category), int(products), str(status))


def class_order(entry: Entry) -> tuple[int, int, int]:
    return (CATEGORIES.index(entry[0]), entry[1], STATUSES.index(entry[2]))


@dataclass(frozen=True)
class Layout:
    """Geometry derived from the entry count alone, so any size up to 2**32 works."""

    count: int
    bucket_bits: int
    group: int

    @classmethod
    def for_count(cls, count: int) -> Layout:
        if not 0 <= count < 2**32:
            raise StoreError("entry count out of range")
        return cls(count, max(8, count.bit_length() - 1), 64)

    @property
    def buckets(self) -> int:
        return 1 << self.bucket_bits

    @property
    def remainder_bits(self) -> int:
        return 64 - self.bucket_bits

    @property
    def width(self) -> int:
        return self.remainder_bits + CLASS_BITS

    @property
    def groups(self) -> int:
        return -(-self.buckets // self.group)

    def section_sizes(self) -> tuple[int, int, int]:
        checkpoints = 4 * (self.groups + 1)
        unary = (self.count + self.buckets + 7) // 8 + PAD
        entries = (self.count * self.width + 7) // 8 + PAD
        return checkpoints, unary, entries


def _align(offset: int) -> int:
    return (offset + 7) & ~7


def header_bytes(layout: Layout, classes: list[Entry], version: int) -> tuple[bytes, dict[str, list[int]]]:
    """The header and the section offsets it declares (deterministic for equal content)."""
    sizes = layout.section_sizes()
    # The header's own length changes the offsets; two passes settle it.
    offset = 0
    sections: dict[str, list[int]] = {}
    for _ in range(2):
        body = {"format": FORMAT, "version": version, "count": layout.count, "bucket_bits": layout.bucket_bits,
                "group": layout.group, "width": layout.width, "classes": [list(c) for c in classes],
                "sections": sections}
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        offset = _align(len(MAGIC) + 4 + len(raw) + 16)
        sections = {}
        for name, size in zip(("checkpoints", "unary", "entries"), sizes, strict=True):
            sections[name] = [offset, size]
            offset = _align(offset + size)
    body["sections"] = sections
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + struct.pack("<I", len(raw)) + raw
    if len(head) > sections["checkpoints"][0]:
        raise StoreError("header does not fit")  # cannot happen: 16 bytes of slack for digits
    return head.ljust(sections["checkpoints"][0], b"\0"), sections


@dataclass(frozen=True)
class Header:
    version: int
    layout: Layout
    classes: list[Entry]
    sections: dict[str, tuple[int, int]]
    file_size: int

    @classmethod
    def parse(cls, head: bytes, file_size: int) -> Header:
        if len(head) < 12 or head[:8] != MAGIC:
            raise StoreError("not an allow-list store (bad magic)")
        (length,) = struct.unpack_from("<I", head, 8)
        if length > MAX_HEADER or 12 + length > len(head):
            raise StoreError("header length out of range")
        try:
            body = json.loads(head[12:12 + length])
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError("header is not JSON") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise StoreError("unsupported store format")
        count, version = body.get("count"), body.get("version")
        if not isinstance(count, int) or not isinstance(version, int) or version < 0:
            raise StoreError("bad count or version")
        layout = Layout.for_count(count)
        if (body.get("bucket_bits"), body.get("group"), body.get("width")) != (
                layout.bucket_bits, layout.group, layout.width):
            raise StoreError("geometry does not match the entry count")
        raw_classes = body.get("classes")
        if not isinstance(raw_classes, list) or len(raw_classes) > MAX_CLASSES:
            raise StoreError("bad class table")
        classes = [check_class(c) for c in raw_classes]
        sections: dict[str, tuple[int, int]] = {}
        raw_sections = body.get("sections")
        if not isinstance(raw_sections, dict):
            raise StoreError("bad sections")
        for name, size in zip(("checkpoints", "unary", "entries"), layout.section_sizes(), strict=True):
            where = raw_sections.get(name)
            if not (isinstance(where, list) and len(where) == 2 and all(isinstance(v, int) for v in where)):
                raise StoreError(f"bad section {name}")
            offset, length = where
            if length != size or offset < 12 + length * 0 or offset + length > file_size:
                raise StoreError(f"section {name} out of bounds (file truncated?)")
            sections[name] = (offset, length)
        return cls(version, layout, classes, sections, file_size)


class AllowListStore:
    """Read-only view of one store file. Opening maps the file and parses only the header."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < 12:
                raise StoreError("file too short")
            self._mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            self._mm.madvise(mmap.MADV_RANDOM)  # lookups jump: read-ahead would only waste the SD card
        finally:
            os.close(fd)
        try:
            self.header = Header.parse(self._mm[:MAX_HEADER + 12], size)
        except StoreError:
            self._mm.close()
            raise
        h = self.header
        self.version = h.version
        self.count = h.layout.count
        self.classes = h.classes
        self._cp = h.sections["checkpoints"][0]
        self._unary = h.sections["unary"][0]
        self._unary_len = h.sections["unary"][1]
        self._entries = h.sections["entries"][0]
        self._rbits = h.layout.remainder_bits
        self._rmask = (1 << self._rbits) - 1
        self._width = h.layout.width
        self._wmask = (1 << self._width) - 1
        self._group = h.layout.group
        self._buckets = h.layout.buckets

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> AllowListStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count

    def _bucket_range(self, bucket: int) -> tuple[int, int]:
        """(index of the bucket's first entry, number of entries in it)."""
        group, j = divmod(bucket, self._group)
        mm = self._mm
        before, after = struct.unpack_from("<II", mm, self._cp + 4 * group)
        bit0 = group * self._group + before
        bit1 = min((group + 1) * self._group, self._buckets) + after
        byte0 = bit0 >> 3
        byte1 = (bit1 + 7) >> 3
        if after < before or after > self.count or byte1 > self._unary_len:
            raise StoreError("checkpoint section corrupt")
        nbits = (byte1 - byte0) * 8
        word = int.from_bytes(mm[self._unary + byte0:self._unary + byte1], "big")
        bits = format(word, f"0{nbits}b")[bit0 - byte0 * 8:bit1 - byte0 * 8]
        runs = bits.split("0", j + 1)  # runs[k] is bucket k's ones
        if len(runs) <= j:
            raise StoreError("unary section corrupt")
        start, n = before + sum(map(len, runs[:j])), len(runs[j])
        if start + n > self.count:
            raise StoreError("unary section corrupt")
        return start, n

    def lookup_class(self, vehicle_id: int) -> Entry | None:
        index = self.class_index(vehicle_id)
        if index is None:
            return None
        if index >= len(self.classes):
            raise StoreError("entry refers to a missing class")
        return self.classes[index]

    def class_index(self, vehicle_id: int) -> int | None:
        """The id's index into the class table, or None when the id is not in this file."""
        if not 0 <= vehicle_id < 2**64 or self.count == 0:
            return None
        start, n = self._bucket_range(vehicle_id >> self._rbits)
        if n == 0:
            return None
        want = vehicle_id & self._rmask
        w = self._width
        bit0 = start * w
        byte0 = bit0 >> 3
        byte1 = ((start + n) * w + 7) >> 3
        total = (byte1 - byte0) * 8
        word = int.from_bytes(self._mm[self._entries + byte0:self._entries + byte1], "big")
        shift = total - (bit0 - byte0 * 8) - w
        for _ in range(n):
            field = (word >> shift) & self._wmask
            remainder = field >> CLASS_BITS
            if remainder == want:
                return int(field & (MAX_CLASSES - 1))
            if remainder > want:
                return None
            shift -= w
        return None

    def __contains__(self, vehicle_id: object) -> bool:
        return isinstance(vehicle_id, int) and self.lookup_class(vehicle_id) is not None
