"""Signed release manifests: only the `software` role's keys, versions only forward, files
pinned by digest; a root without the role trusts no release."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.allowlist.chunks import ChunkStore
from agent.trust import root as trust
from agent.trust.root import TrustError, TrustStore
from agent.updates import manifest as rm
from hq import software_release as sr
from tests.allowlist_fixtures import NOW, Headquarters


def _wheel(tmp: Path, version: str) -> Path:
    path = tmp / f"spbu_edge-{version}-py3-none-any.whl"
    path.write_bytes(b"PK fake wheel " + version.encode() * 500)
    return path


def _release(hq: Headquarters, tmp: Path, version: str, sequence: int, **kw: object) -> bytes:
    out = tmp / f"rel-{version}"
    sr.build(out, version, sequence, [_wheel(tmp, version)], chunk_size=1024, now=NOW, **kw)  # type: ignore[arg-type]
    return sr.sign(out, hq.role_keys["software"])


def _store(hq: Headquarters, tmp: Path) -> TrustStore:
    path = tmp / "root.json"
    path.write_bytes(hq.roots[0])
    return TrustStore.from_root_file(path, tmp / "trust-state.json")


def test_good_release_verifies_and_pins_every_file(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    raw = _release(hq, tmp_path, "0.2.0", 2, percent=100)
    manifest = rm.verify(_store(hq, tmp_path), raw, NOW)
    assert (manifest.version, manifest.sequence) == ("0.2.0", 2)
    assert [f.kind for f in manifest.files] == ["wheel"]
    chunks = ChunkStore(tmp_path / "chunks")
    for digest, data in sr.chunks(tmp_path / "rel-0.2.0").items():
        chunks.put(digest, len(data), data)
    assert chunks.assemble(manifest.files[0].blob) == (tmp_path / "spbu_edge-0.2.0-py3-none-any.whl").read_bytes()


def test_signed_by_a_non_software_key_is_refused(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    out = tmp_path / "rel"
    sr.build(out, "0.2.0", 2, [_wheel(tmp_path, "0.2.0")], now=NOW)
    for role in ("allowlist", "commands", "tokens"):
        raw = sr.sign(out, hq.role_keys[role])
        with pytest.raises(TrustError) as err:
            rm.verify(_store(hq, tmp_path), raw, NOW)
        assert err.value.check == "unknown key"


def test_old_version_and_replay_are_refused(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    store = _store(hq, tmp_path)
    store.raise_floor(rm.ROLE, 5)
    with pytest.raises(TrustError) as err:
        rm.verify(store, _release(hq, tmp_path, "0.4.0", 4), NOW)
    assert err.value.check == "rollback"
    with pytest.raises(TrustError) as err:
        rm.verify(store, _release(hq, tmp_path, "0.5.0", 5), NOW)
    assert err.value.check == "already current"


def test_expired_manifest_is_refused(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    raw = _release(hq, tmp_path, "0.2.0", 2)
    with pytest.raises(TrustError) as err:
        rm.verify(_store(hq, tmp_path), raw, NOW + dt.timedelta(days=91))
    assert err.value.check == "expired"


def test_a_changed_file_digest_breaks_the_signature(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    envelope = json.loads(_release(hq, tmp_path, "0.2.0", 2))
    envelope["signed"]["files"][0]["sha256"] = "0" * 64
    with pytest.raises(TrustError) as err:
        rm.verify(_store(hq, tmp_path), trust.canonical(envelope), NOW)
    assert err.value.check == "bad signature"


def test_a_root_without_the_software_role_still_loads_and_trusts_no_release(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    hq.role_keys.pop("software")
    hq.roots = [hq.sign_root(hq.root_keys[:2])]
    assert "software" not in json.loads(hq.roots[0])["signed"]["roles"]
    store = _store(hq, tmp_path)
    out = tmp_path / "rel"
    sr.build(out, "0.2.0", 2, [_wheel(tmp_path, "0.2.0")], now=NOW)
    with pytest.raises(TrustError):
        rm.verify(store, sr.sign(out, hq.role_keys["allowlist"]), NOW)


def test_tampered_chunk_is_refused_by_the_store(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path)
    _release(hq, tmp_path, "0.2.0", 2)
    digest, data = next(iter(sr.chunks(tmp_path / "rel-0.2.0").items()))
    store = ChunkStore(tmp_path / "chunks")
    with pytest.raises(TrustError) as err:
        store.put(digest, len(data), data[:-1] + bytes([data[-1] ^ 1]))
    assert err.value.check == "chunk digest mismatch"
    assert not store.have(digest, len(data))


def test_unsafe_paths_and_bad_versions_do_not_parse() -> None:
    base = rm.manifest_body("0.2.0", 2, NOW, NOW + dt.timedelta(days=1),
                            [rm.file_body("wheels/spbu_edge-0.2.0-py3-none-any.whl", "wheel", b"x", 1024)])
    rm.parse(base, b"")
    for path in ("../etc/passwd", "/abs", "a/../../b", ""):
        body = json.loads(json.dumps(base))
        body["files"][0]["path"] = path
        with pytest.raises(TrustError):
            rm.parse(body, b"")
    body = json.loads(json.dumps(base))
    body["version"] = "1.2"
    with pytest.raises(TrustError):
        rm.parse(body, b"")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["version", "sequence", "files", "rollout", "migrations", "chunk_size",
                                        "created", "expires", "min_agent_version", "firmware_version"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3),
                                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))))
def test_garbage_bodies_raise_trust_errors_only(fields: dict[str, object]) -> None:
    body = rm.manifest_body("0.2.0", 2, NOW, NOW + dt.timedelta(days=1),
                            [rm.file_body("wheels/spbu_edge-0.2.0-py3-none-any.whl", "wheel", b"x", 1024)])
    body.update(fields)
    with contextlib.suppress(TrustError):
        rm.parse(body, b"")


def test_cohorts_are_stable_and_nested() -> None:
    ids = [f"{a:02d}.{b:03d}.01" for a in range(10, 40) for b in range(100, 200, 7)]
    buckets = {s: rm.cohort_bucket(s) for s in ids}
    assert buckets == {s: rm.cohort_bucket(s) for s in ids}
    for small, big in ((1, 10), (10, 50), (50, 100)):
        inside_small = {s for s in ids if rm.Rollout(small, 1, False).includes(s)}
        inside_big = {s for s in ids if rm.Rollout(big, 1, False).includes(s)}
        assert inside_small <= inside_big
    assert all(rm.Rollout(100, 1, False).includes(s) for s in ids)
    assert not any(rm.Rollout(100, 2, True).includes(s) for s in ids)
    share = sum(1 for s in ids if rm.Rollout(50, 1, False).includes(s)) / len(ids)
    assert 0.3 < share < 0.7
