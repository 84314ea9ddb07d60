"""The allow-list store: build, delta and lookup agree with a plain dict; bad files are
refused with a clear error; an install cut short leaves the old version serving."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.allowlist import build
from agent.allowlist import manifest as manifests
from agent.allowlist.repo import AllowListRepo
from agent.allowlist.store import AllowListStore, Entry, Layout, StoreError
from agent.trust.root import TrustStore
from tests.allowlist_fixtures import CLASSES, NOW, Headquarters, registry

ids = st.integers(min_value=1, max_value=2**64 - 1)
# Ids crowded under a few prefixes: long buckets, groups with many entries, empty stretches.
crowded = st.builds(lambda hi, lo: (hi << 52) | lo or 1, st.integers(0, 3), st.integers(0, 2**12))
entries = st.dictionaries(st.one_of(ids, crowded), st.sampled_from(CLASSES), max_size=400)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def write(tmp: Path, model: dict[int, Entry], version: int = 1) -> AllowListStore:
    path = tmp / f"store-{random.getrandbits(32)}.bin"
    path.write_bytes(build.encode(build.from_entries((k, *v) for k, v in model.items()), version))
    return AllowListStore(path)


@SETTINGS
@given(model=entries, probes=st.lists(st.one_of(ids, crowded), max_size=200))
def test_lookup_agrees_with_a_dict(tmp_path: Path, model: dict[int, Entry], probes: list[int]) -> None:
    with write(tmp_path, model) as store:
        assert len(store) == len(model)
        for vid, entry in model.items():
            assert store.lookup_class(vid) == entry
        for vid in probes:
            assert store.lookup_class(vid) == model.get(vid)
        table, version = build.load(store.path)
        assert table.as_dict() == model and version == 1


@SETTINGS
@given(old=entries, new=entries, keep=st.floats(0, 1))
def test_delta_turns_old_into_new(old: dict[int, Entry], new: dict[int, Entry], keep: float) -> None:
    # Mix: part of old survives unchanged, part changes class, the rest is new or gone.
    rng = random.Random(len(old) * 7 + len(new))
    target = {k: v for k, v in old.items() if rng.random() < keep}
    target.update({k: rng.choice(CLASSES) for k in list(target)[: len(target) // 3]})
    target.update(new)
    a, b = build.from_entries((k, *v) for k, v in old.items()), build.from_entries((k, *v) for k, v in target.items())
    wire = build.encode_delta(build.diff(a, b, 4, 5))
    delta = build.decode_delta(wire)
    changed = {k for k in old.keys() | target.keys() if old.get(k) != target.get(k)}
    assert {int(i) for i in delta.ids} == changed
    applied = build.apply(a, delta)
    assert applied.as_dict() == target
    assert build.encode(applied, 5) == build.encode(b, 5)  # byte for byte: the manifest digest holds


def test_delta_from_the_wrong_base_is_refused() -> None:
    a = build.from_entries([(5, "motorcycle", 1, "active")])
    b = build.from_entries([])
    delta = build.decode_delta(build.encode_delta(build.diff(a, b, 1, 2)))
    with pytest.raises(StoreError, match="wrong base"):
        build.apply(build.from_entries([(6, "motorcycle", 1, "active")]), delta)


@pytest.mark.parametrize("bad", [
    [(0, "motorcycle", 1, "active")],
    [(2**64, "motorcycle", 1, "active")],
    [(1, "tractor", 1, "active")],
    [(1, "motorcycle", 8, "active")],
    [(1, "motorcycle", 1, "stolen")],
])
def test_builder_refuses_bad_entries(bad: list[tuple[int, str, int, str]]) -> None:
    with pytest.raises(StoreError):
        build.from_entries(bad)


def test_builder_refuses_duplicates() -> None:
    with pytest.raises(StoreError, match="duplicate"):
        build.canonical(np.array([7, 7], dtype=np.uint64), np.zeros(2, np.uint8), [CLASSES[0]])


@pytest.mark.parametrize("count", [50_000_000, 200_000_000])
def test_layout_stays_under_six_bytes_per_entry_at_national_scale(count: int) -> None:
    """The geometry derives from the count; at 50M and 200M the file is <= 6.0 B/entry."""
    layout = Layout.for_count(count)
    assert sum(layout.section_sizes()) / count <= 6.0
    assert 2**layout.bucket_bits <= count < 2**(layout.bucket_bits + 1)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_damaged_files_fail_cleanly(tmp_path: Path, cut: int, flip: int, bit: int) -> None:
    """Truncated or bit-flipped files: a clear StoreError, never another exception."""
    good = build.encode(build.from_entries((k, *v) for k, v in registry(300).items()), 3)
    damaged = bytearray(good[:cut] if cut < len(good) else good)
    if flip < len(damaged):
        damaged[flip] ^= 1 << bit
    path = tmp_path / "damaged.bin"
    path.write_bytes(bytes(damaged))
    try:
        store = AllowListStore(path)
    except StoreError:
        return
    with store:
        for vid in [*list(registry(300))[:50], 1, 2**64 - 1]:
            with contextlib.suppress(StoreError):
                store.lookup_class(vid)
    # Whatever the damage, nothing but StoreError escapes; damage that still parses is the
    # manifest digest's to catch (tests/agent/test_allowlist_trust.py).
    if cut < len(good):
        with pytest.raises(StoreError):
            build.decode(bytes(damaged))


@pytest.mark.parametrize("data", [b"", b"SPBUAL1\n", b"SPBUAL1\n\xff\xff\xff\xff",
                                  b"SPBUAL1\n\x05\0\0\0{\"a\":", b"x" * 100])
def test_garbage_is_not_a_store(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "g.bin"
    path.write_bytes(data)
    with pytest.raises(StoreError):
        AllowListStore(path)


# --- atomic install ----------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", ["rename", "replace"])
def test_power_cut_during_install_leaves_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fail_at: str) -> None:
    hq = Headquarters(tmp_path / "hq")
    trust = TrustStore.from_root_file(hq.root_file(), tmp_path / "st" / "trust.json")
    repo = AllowListRepo(tmp_path / "st" / "allowlist", trust)
    v1 = hq.release(registry(500))
    m1 = manifests.verify(trust, hq.manifest(v1), NOW)
    repo.install(m1, hq.releases.store_path(v1).read_bytes())
    v2 = hq.release(registry(700, seed=2))
    m2 = manifests.verify(trust, hq.manifest(v2), NOW)

    def power_cut(*args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, fail_at, power_cut)
    with pytest.raises(OSError, match="power cut"):
        repo.install(m2, hq.releases.store_path(v2).read_bytes())
    monkeypatch.undo()
    current = AllowListRepo(tmp_path / "st" / "allowlist", TrustStore.from_root_file(hq.root_file())).open_current()
    assert current is not None and current.version == 1 and current.store.count == 500
    # The interrupted install is simply redone.
    repo.install(m2, hq.releases.store_path(v2).read_bytes())
    current = repo.open_current()
    assert current is not None and current.version == 2 and current.store.count == 700


def test_installed_store_damaged_on_disk_is_not_trusted(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path / "hq")
    trust = TrustStore.from_root_file(hq.root_file())
    repo = AllowListRepo(tmp_path / "al", trust)
    v1 = hq.release(registry(500))
    repo.install(manifests.verify(trust, hq.manifest(v1), NOW), hq.releases.store_path(v1).read_bytes())
    store = tmp_path / "al" / "current" / "store.bin"
    store.write_bytes(store.read_bytes()[:-10])
    with pytest.raises(Exception, match="truncated"):
        repo.open_current()


def test_expiry_in_manifest_is_what_eligibility_sees(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path / "hq")
    trust = TrustStore.from_root_file(hq.root_file())
    repo = AllowListRepo(tmp_path / "al", trust)
    v1 = hq.release(registry(10), validity=dt.timedelta(days=3))
    repo.install(manifests.verify(trust, hq.manifest(v1), NOW), hq.releases.store_path(v1).read_bytes())
    current = repo.open_current()
    assert current is not None
    assert current.expires - current.created == dt.timedelta(days=3)
    assert len(current.salt) == 16


def test_every_single_bit_flip_fails_cleanly(tmp_path: Path) -> None:
    """Exhaustive over a small store: any one flipped bit opens or is refused, and lookups
    answer or raise StoreError (a flipped checkpoint once made a negative bit range)."""
    model = registry(120)
    good = build.encode(build.from_entries((k, *v) for k, v in model.items()), 3)
    probes = [*list(model)[:40], 1, 2**64 - 1]
    path = tmp_path / "flipped.bin"
    opened = 0
    for index in range(len(good)):
        for bit in range(8):
            damaged = bytearray(good)
            damaged[index] ^= 1 << bit
            path.write_bytes(bytes(damaged))
            try:
                store = AllowListStore(path)
            except StoreError:
                continue
            opened += 1
            with store:
                for vid in probes:
                    with contextlib.suppress(StoreError):
                        store.lookup_class(vid)
    assert 0 < opened < len(good) * 8  # header flips are refused, body flips open
