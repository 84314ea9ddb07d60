"""The tamper suite: every attack on the signed allow-list is refused, the failed check is
named, and the list in force keeps serving."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.allowlist import build
from agent.allowlist import manifest as manifests
from agent.trust import root as trust
from agent.trust.root import TrustError
from agent.trust.signing import key_id
from tests.allowlist_fixtures import NOW, Headquarters, Station, registry

ENTRIES = registry(3000)


@pytest.fixture
def hq(tmp_path: Path) -> Headquarters:
    return Headquarters(tmp_path / "hq")


@pytest.fixture
def station(tmp_path: Path, hq: Headquarters) -> Station:
    """A station serving version 1 of the list."""
    st = Station(tmp_path / "station", hq.root_file())
    v1 = hq.release(ENTRIES)
    st.offer(hq.manifest(v1), hq.chunks(v1))
    assert st.installed() == [1] and st.rejected() == []
    return st


def assert_still_serving(st: Station, version: int = 1) -> None:
    current = st.repo.open_current()
    assert current is not None and current.version == version
    vid, (category, products, status) = next(iter(ENTRIES.items()))
    vehicle = current.lookup(vid)
    assert vehicle is not None and (vehicle.category, vehicle.products, vehicle.status) == (category, products, status)
    current.close()


def resign(raw: bytes, mutate: object = None, keys: list[Ed25519PrivateKey] | None = None,
           signatures: list[dict[str, str]] | None = None) -> bytes:
    envelope = json.loads(raw)
    if callable(mutate):
        mutate(envelope["signed"])
    if keys is not None:
        return trust.sign(envelope["signed"], keys)
    if signatures is not None:
        envelope["signatures"] = signatures
    return json.dumps(envelope).encode()


def test_an_honest_update_goes_through(station: Station, hq: Headquarters) -> None:
    changed = dict(ENTRIES)
    victim = next(iter(changed))
    del changed[victim]
    v2 = hq.release(changed)
    station.offer(hq.manifest(v2), hq.chunks(v2))
    assert station.installed() == [1, 2] and station.rejected() == []
    current = station.repo.open_current()
    assert current is not None and current.version == 2 and current.lookup(victim) is None


def test_bad_signature(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(registry(3000, seed=2))
    envelope = json.loads(hq.manifest(v2))
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[7] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    station.offer(json.dumps(envelope).encode(), hq.chunks(v2))
    assert station.rejected() == ["bad signature"]
    assert_still_serving(station)


def test_tampered_body_is_a_bad_signature(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(ENTRIES)

    def stretch(signed: dict[str, object]) -> None:
        signed["expires"] = (NOW + dt.timedelta(days=3650)).isoformat()

    station.offer(resign(hq.manifest(v2), stretch), hq.chunks(v2))
    assert station.rejected() == ["bad signature"]
    assert_still_serving(station)


def test_threshold_not_met(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path / "hq")
    hq.role_keys["allowlist"] = [Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()]
    hq.thresholds["allowlist"] = 2
    hq.roots = [hq.sign_root(hq.root_keys[:2])]
    st = Station(tmp_path / "st", hq.root_file())
    v1 = hq.release(ENTRIES)  # both keys: accepted
    st.offer(hq.manifest(v1), hq.chunks(v1))
    assert st.installed() == [1]
    v2 = hq.release(registry(10, seed=5), keys=hq.role_keys["allowlist"][:1])
    st.offer(hq.manifest(v2), hq.chunks(v2))
    assert st.rejected() == ["threshold not met"]
    # The same key twice is still one key.
    doubled = json.loads(hq.manifest(v2))
    doubled["signatures"] = doubled["signatures"] * 2
    st.offer(json.dumps(doubled).encode(), hq.chunks(v2))
    assert st.rejected() == ["threshold not met", "threshold not met"]
    assert_still_serving(st)


def test_unknown_key(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(registry(10, seed=5), keys=[Ed25519PrivateKey.generate()])
    station.offer(hq.manifest(v2), hq.chunks(v2))
    # A key the root lists, but for another role, is just as unknown here.
    station.offer(resign(hq.manifest(v2), keys=hq.role_keys["policy"]), hq.chunks(v2))
    assert station.rejected() == ["unknown key", "unknown key"]
    assert_still_serving(station)


def test_rollback(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(registry(50, seed=2))
    station.offer(hq.manifest(v2), hq.chunks(v2))
    assert station.installed() == [1, 2]
    station.offer(hq.manifest(1), {})
    assert station.rejected() == ["rollback"]
    assert_still_serving_v2 = station.repo.open_current()
    assert assert_still_serving_v2 is not None and assert_still_serving_v2.version == 2


def test_rollback_floor_survives_a_restart(tmp_path: Path, station: Station, hq: Headquarters) -> None:
    v2 = hq.release(registry(50, seed=2))
    station.offer(hq.manifest(v2), hq.chunks(v2))
    restarted = Station(station.directory, hq.root_file())
    restarted.offer(hq.manifest(1), {})
    assert restarted.rejected() == ["rollback"]


def test_expired_manifest(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(ENTRIES, validity=dt.timedelta(seconds=-1))
    station.offer(hq.manifest(v2), hq.chunks(v2))
    assert station.rejected() == ["expired"]
    assert_still_serving(station)


def test_replayed_old_delta_on_the_wire(station: Station, hq: Headquarters) -> None:
    """The delta 1->2 served again where 2->3 belongs: refused by its digest."""
    v2 = hq.release({**ENTRIES, 77: ("motorcycle", 1, "active")})
    station.offer(hq.manifest(v2), hq.chunks(v2))
    old_delta = hq.releases.delta_path(2).read_bytes()
    v3 = hq.release({**ENTRIES, 78: ("motorcycle", 1, "active")})
    m3 = manifests.parse(json.loads(hq.manifest(v3))["signed"], hq.manifest(v3))
    step = m3.deltas[-1].blob
    chunks = hq.chunks(v3)
    chunks[step.chunks[0]] = old_delta[:step.chunk_length(0)].ljust(step.chunk_length(0), b"\0")
    station.offer(hq.manifest(v3), chunks)
    assert "chunk digest mismatch" in station.rejected()
    assert_still_serving(station, 2)


def test_replayed_old_delta_in_a_signed_manifest(station: Station, hq: Headquarters) -> None:
    """Even a properly signed manifest cannot make an old delta apply to a newer list."""
    v2 = hq.release({**ENTRIES, 77: ("motorcycle", 1, "active")})
    station.offer(hq.manifest(v2), hq.chunks(v2))
    v3 = hq.release({**ENTRIES, 78: ("motorcycle", 1, "active")})
    old_delta = hq.releases.delta_path(2).read_bytes()
    body = json.loads(hq.manifest(v3))["signed"]
    body["deltas"] = [{"from": 2, "to": 3, **manifests.blob_body(old_delta, body["chunk_size"])}]
    raw = trust.sign(body, hq.role_keys["allowlist"])
    station.offer(raw, {**hq.chunks(v3), **dict(zip(body["deltas"][0]["chunks"], [
        old_delta[i:i + body["chunk_size"]] for i in range(0, len(old_delta), body["chunk_size"])], strict=True))})
    assert station.rejected() == ["replayed delta"]
    assert_still_serving(station, 2)


def test_mix_and_match_chunk_of_another_version(station: Station, hq: Headquarters) -> None:
    v2 = hq.release(registry(3000, seed=9))
    chunks = hq.chunks(v2)
    m2 = manifests.parse(json.loads(hq.manifest(v2))["signed"], hq.manifest(v2))
    old = hq.chunks(1)
    # Same length, from version 1, handed over where version 2's chunk belongs.
    target = m2.snapshot.chunks[1]
    chunks[target] = next(data for data in old.values() if len(data) == len(chunks[target]))
    station.offer(hq.manifest(v2), chunks)
    assert station.rejected() == ["chunk digest mismatch"]
    assert station.installed() == [1]
    assert_still_serving(station)
    assert station.sync.pending is not None  # still wants the right chunk, and takes it when it comes
    station.sync.fetcher._not_before.clear()
    station.offer(hq.manifest(v2), hq.chunks(v2))
    station.sync._handle("$tick", b"")
    for digest in list(station.sync.fetcher._inflight):
        station.sync._handle(f"hq/v1/allowlist/chunk/{digest}", hq.chunks(v2)[digest])
    assert station.installed() == [1, 2]


def test_signed_manifest_whose_parts_do_not_add_up(station: Station, hq: Headquarters) -> None:
    """Snapshot digest of one version, content of another: the whole-file check names it."""
    v2 = hq.release(registry(3000, seed=9))
    body = json.loads(hq.manifest(v2))["signed"]
    other = hq.releases.store_path(1).read_bytes()
    spec = manifests.blob_body(other, body["chunk_size"])
    body["snapshot"] = {**spec, "sha256": body["snapshot"]["sha256"]}
    chunks = {d: other[i * body["chunk_size"]:(i + 1) * body["chunk_size"]] for i, d in enumerate(spec["chunks"])}
    station.offer(trust.sign(body, hq.role_keys["allowlist"]), chunks)
    assert station.rejected() == ["mix-and-match"]
    assert_still_serving(station)


@pytest.mark.parametrize(("damage", "check"), [
    (lambda data: data + b"\0" * 4096, "endless data"),
    (lambda data: data[:-1], "truncated"),
    (lambda data: data[:100] + bytes([data[100] ^ 0x20]) + data[101:], "chunk digest mismatch"),
])
def test_damaged_chunk(station: Station, hq: Headquarters, damage: object, check: str) -> None:
    v2 = hq.release(registry(3000, seed=4))
    chunks = hq.chunks(v2)
    digest = next(iter(chunks))
    assert callable(damage)
    chunks[digest] = damage(chunks[digest])
    station.offer(hq.manifest(v2), chunks)
    assert station.rejected() == [check]
    assert station.installed() == [1]
    assert_still_serving(station)
    assert not (station.repo.chunks / digest).exists()  # never kept


def test_endless_manifest(station: Station) -> None:
    station.offer(b"{" + b" " * (trust.MAX_METADATA_BYTES + 1) + b"}")
    assert station.rejected() == ["endless data"]
    assert_still_serving(station)


def test_chunk_rotting_on_disk_is_fetched_again(tmp_path: Path, hq: Headquarters) -> None:
    st = Station(tmp_path / "st", hq.root_file())
    v1 = hq.release(ENTRIES)
    chunks = hq.chunks(v1)
    first, *rest = chunks
    st.offer(hq.manifest(v1), {d: chunks[d] for d in rest})  # one chunk never comes
    assert st.installed() == []
    kept = sorted(p.name for p in st.repo.chunks.iterdir())
    assert first not in kept and len(kept) == len(rest)
    (st.repo.chunks / rest[0]).write_bytes(b"rot")
    restarted = Station(st.directory, hq.root_file())
    restarted.sync._handle("hq/v1/allowlist/manifest", hq.manifest(v1))
    assert set(restarted.sync.fetcher.missing) == {first, rest[0]}  # only the missing and the damaged


def test_fast_forward_attack_recovered_by_root_rotation(station: Station, hq: Headquarters) -> None:
    stolen = hq.role_keys["allowlist"]
    # The thief signs a version far in the future: stations take it (the key was valid).
    body = json.loads(hq.manifest(1))["signed"]
    body["version"] = 10**9
    hq_store = build.encode(build.load(hq.releases.store_path(1))[0], 10**9)
    body["snapshot"] = manifests.blob_body(hq_store, body["chunk_size"])
    body["deltas"] = []
    size = body["chunk_size"]
    station.offer(trust.sign(body, stolen), {d: hq_store[i * size:(i + 1) * size]
                                             for i, d in enumerate(body["snapshot"]["chunks"])})
    assert station.installed() == [1, 10**9]
    # Headquarters' next honest version looks like a rollback ...
    v2 = hq.release(registry(100, seed=3))
    station.offer(hq.manifest(v2), hq.chunks(v2))
    assert station.rejected() == ["rollback"]
    # ... until the root rotates the allowlist key: the floor resets, v2 (re-signed) installs.
    rotated = hq.rotate("allowlist")
    station.root(2, rotated)
    assert [e.kind for e in station.events if e.kind == "root"] == ["root"]
    assert station.rejected()[-1] == "unknown key"  # the retained manifest, re-judged: old key
    # A restart before the honest version arrives keeps the reset floor.
    from agent.docstore import DocumentStore

    restarted = DocumentStore(station.directory, {}, hq.root_file())
    restarted.load_saved()
    assert restarted.trust.root.version == 2 and restarted.trust.floor("allowlist") == 0
    assert restarted.allowlist is None  # the list the stolen key signed is not trusted any more
    station.offer(resign(hq.manifest(v2), keys=hq.role_keys["allowlist"]), hq.chunks(v2))
    assert station.current() == 2
    # And the stolen key is worthless now.
    body["version"] = 10**9 + 1
    station.offer(trust.sign(body, stolen), {})
    assert station.rejected()[-1] == "unknown key"
    assert station.current() == 2


def test_root_rotation_needs_old_and_new_thresholds(tmp_path: Path, hq: Headquarters) -> None:
    st = trust.TrustStore.from_root_file(hq.root_file(), tmp_path / "trust.json")
    new_only = Headquarters(tmp_path / "other")
    hq.root_version = 2
    # Signed by one old root key only: below the old threshold.
    with pytest.raises(TrustError) as err:
        st.update_root(hq.sign_root(hq.root_keys[:1]))
    assert err.value.check == "threshold not met"
    # Signed only by keys the old root does not know.
    with pytest.raises(TrustError) as err:
        st.update_root(hq.sign_root(new_only.root_keys[:2]))
    assert err.value.check == "unknown key"
    # New root keys, signed by the old threshold but not the new one's.
    hq.root_version = 1
    rotated = hq.rotate("root", old_signers=2)
    envelope = json.loads(rotated)
    envelope["signatures"] = envelope["signatures"][:2]  # drop the new keys' signatures
    with pytest.raises(TrustError) as err:
        st.update_root(json.dumps(envelope).encode())
    assert err.value.check == "unknown key"  # none of the new root's keys signed
    assert st.root.version == 1
    changed = st.update_root(rotated)
    assert st.root.version == 2 and changed == []
    # Saved: a restart trusts root 2, not the provisioned root 1; old version refused.
    again = trust.TrustStore.from_root_file(hq.root_file(), tmp_path / "trust.json")
    assert again.root.version == 2
    with pytest.raises(TrustError) as err:
        again.update_root(hq.roots[0])
    assert err.value.check == "rollback"


def test_root_version_gap_and_expiry(tmp_path: Path, hq: Headquarters) -> None:
    st = trust.TrustStore.from_root_file(hq.root_file())
    hq.root_version = 3
    with pytest.raises(TrustError) as err:
        st.update_root(hq.sign_root(hq.root_keys[:2]))
    assert err.value.check == "version gap"
    hq.root_version = 2
    with pytest.raises(TrustError) as err:
        st.update_root(hq.sign_root(hq.root_keys[:2]), now=NOW + dt.timedelta(days=400))
    assert err.value.check == "expired"


@pytest.mark.parametrize("mutate", [
    lambda s: s.pop("roles"),
    lambda s: s["roles"].pop("tokens"),
    lambda s: s["roles"]["allowlist"].update(threshold=5),
    lambda s: s["roles"]["allowlist"].update(keyids=["0" * 16]),
    lambda s: s["keys"].update({"deadbeefdeadbeef": {"keytype": "ed25519", "public": "00" * 32}}),
    lambda s: s.update(version=0),
    lambda s: s.update(expires="tomorrow"),
])
def test_malformed_root_is_refused(hq: Headquarters, mutate: object) -> None:
    body = hq.root_body()
    assert callable(mutate)
    mutate(body)
    with pytest.raises(TrustError) as err:
        trust.load_root(trust.sign(body, hq.root_keys[:2]))
    assert err.value.check == "malformed"


def test_keyring_and_threshold_for_other_streams(hq: Headquarters) -> None:
    st = trust.TrustStore.from_root_file(hq.root_file())
    for role in ("tokens", "commands", "policy", "allowlist"):
        [key] = hq.role_keys[role]
        ring = st.keyring(role)
        assert list(ring) == [key_id(key.public_key())] and st.threshold(role) == 1
    signed = {"_type": "commands", "version": 1}
    assert st.verify("commands", trust.sign(signed, hq.role_keys["commands"])) == signed
    with pytest.raises(TrustError) as err:
        st.verify("commands", trust.sign({"_type": "tokens"}, hq.role_keys["tokens"]))
    assert err.value.check == "wrong type"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=5), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["version", "created", "expires", "salt", "count", "chunk_size",
                                             "snapshot", "deltas", "_type"]), json_values))
def test_manifest_parser_fuzz(body: dict[str, object]) -> None:
    """Any signed-but-malformed body: TrustError('malformed'), nothing else."""
    try:
        manifests.parse(body, b"")
    except TrustError as exc:
        assert exc.check == "malformed"


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_envelope_fuzz(data: bytes) -> None:
    store = trust.TrustStore.from_keys({})
    try:
        store.verify("allowlist", data)
    except TrustError:
        pass
    else:
        raise AssertionError("verified without any key")
