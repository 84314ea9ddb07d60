"""Signed envelopes (agent/trust/signing.py), document bodies (agent/trust/documents.py) and the store
that keeps the documents in force (agent/docstore.py). Real Ed25519 keys throughout."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent import docstore
from agent.docstore import DocumentStore
from agent.domain import PRODUCTS, STATUS_ACTIVE, STATUS_SUSPENDED
from agent.trust import signing
from agent.trust.documents import ALLOWLIST_KIND, POLICY_KIND, AllowList, DocumentError, QuotaPolicy
from agent.trust.signing import (
    SignatureError,
    key_id,
    load_private_key,
    load_public_key_hex,
    public_key_hex,
    save_private_key,
    sign_document,
    verify_document,
)
from simulators.hq import DEFAULT_LIMITS_L, DEFAULT_PRICES, HeadquartersSim, synthetic_registry

CREATED = "2025-03-01T00:00:00+00:00"
EXPIRES = "2025-03-15T00:00:00+00:00"
REGISTRY = synthetic_registry(25, seed=11)


def allowlist_body(version: int = 1, entries: list[list[Any]] | None = None) -> dict[str, Any]:
    return {
        "version": version,
        "created": CREATED,
        "expires": EXPIRES,
        "entries": [e.as_list() for e in REGISTRY] if entries is None else entries,
    }


def policy_body(version: int = 1) -> dict[str, Any]:
    return {
        "version": version,
        "created": CREATED,
        "expires": EXPIRES,
        "limits_l": copy.deepcopy(DEFAULT_LIMITS_L),
        "prices_idr_per_l": dict(DEFAULT_PRICES),
        "unregistered_l": {"pertalite": 0, "solar": 0},
        "max_fill_l": 200,
    }


def trusted_of(*keys: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
    return {key_id(k.public_key()): k.public_key() for k in keys}


def trusted_hex(*keys: Ed25519PrivateKey) -> dict[str, str]:
    return {key_id(k.public_key()): public_key_hex(k.public_key()) for k in keys}


def envelope_of(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def reenvelope(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def flip_byte(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def flip_payload_bit(data: bytes, index: int) -> bytes:
    envelope = envelope_of(data)
    envelope["payload"] = flip_byte(envelope["payload"], index)
    return reenvelope(envelope)


# --- signing ---------------------------------------------------------------------------


def test_sign_verify_round_trip(signing_key: Ed25519PrivateKey) -> None:
    body = allowlist_body(version=3)
    data = sign_document(ALLOWLIST_KIND, body, signing_key)
    assert verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key)) == body
    envelope = envelope_of(data)
    assert envelope["kind"] == ALLOWLIST_KIND
    assert envelope["key_id"] == key_id(signing_key.public_key())


def test_verify_accepts_any_of_several_trusted_keys(signing_key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    data = sign_document(POLICY_KIND, policy_body(), other)
    assert verify_document(data, POLICY_KIND, trusted_of(signing_key, other))["version"] == 1


def test_tampered_payload_is_bad_signature(signing_key: Ed25519PrivateKey) -> None:
    envelope = envelope_of(sign_document(ALLOWLIST_KIND, allowlist_body(version=1), signing_key))
    forged = json.dumps(allowlist_body(version=99), separators=(",", ":"), sort_keys=True).encode()
    envelope["payload"] = base64.b64encode(forged).decode()
    with pytest.raises(SignatureError, match="bad signature"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


def test_single_flipped_payload_bit_is_bad_signature(signing_key: Ed25519PrivateKey) -> None:
    envelope = envelope_of(sign_document(ALLOWLIST_KIND, allowlist_body(), signing_key))
    envelope["payload"] = flip_byte(envelope["payload"], 10)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda sig: flip_byte(sig, 0), id="first-bit"),
        pytest.param(lambda sig: flip_byte(sig, 63), id="last-bit"),
        pytest.param(lambda sig: base64.b64encode(base64.b64decode(sig)[:32]).decode(), id="truncated"),
        pytest.param(lambda sig: "", id="empty"),
        pytest.param(lambda sig: base64.b64encode(bytes(64)).decode(), id="zeros"),
    ],
)
def test_tampered_signature_is_bad_signature(
    signing_key: Ed25519PrivateKey, tamper: Callable[[str], str]
) -> None:
    envelope = envelope_of(sign_document(POLICY_KIND, policy_body(), signing_key))
    envelope["sig"] = tamper(envelope["sig"])
    with pytest.raises(SignatureError, match="bad signature"):
        verify_document(reenvelope(envelope), POLICY_KIND, trusted_of(signing_key))


def test_wrong_kind_is_refused(signing_key: Ed25519PrivateKey) -> None:
    data = sign_document(POLICY_KIND, policy_body(), signing_key)
    with pytest.raises(SignatureError, match=r"wrong kind 'policy', expected 'allowlist'"):
        verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))


def test_kind_is_bound_into_the_signature(signing_key: Ed25519PrivateKey) -> None:
    """Relabelling a policy envelope as an allow-list passes the kind check but not the signature."""
    envelope = envelope_of(sign_document(POLICY_KIND, policy_body(), signing_key))
    envelope["kind"] = ALLOWLIST_KIND
    with pytest.raises(SignatureError, match="bad signature"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


def test_unknown_key_id_is_refused(signing_key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    data = sign_document(ALLOWLIST_KIND, allowlist_body(), stranger)
    with pytest.raises(SignatureError, match="unknown signing key") as exc:
        verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))
    assert key_id(stranger.public_key()) in str(exc.value)


@pytest.mark.parametrize("kid", [None, 12345, ["x"]], ids=["missing", "int", "list"])
def test_non_string_key_id_is_refused(signing_key: Ed25519PrivateKey, kid: object) -> None:
    envelope = envelope_of(sign_document(ALLOWLIST_KIND, allowlist_body(), signing_key))
    if kid is None:
        del envelope["key_id"]
    else:
        envelope["key_id"] = kid
    with pytest.raises(SignatureError, match="unknown signing key"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


def test_claiming_a_trusted_key_id_does_not_help_a_stranger(signing_key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    envelope = envelope_of(sign_document(ALLOWLIST_KIND, allowlist_body(), stranger))
    envelope["key_id"] = key_id(signing_key.public_key())
    with pytest.raises(SignatureError, match="bad signature"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


@pytest.mark.parametrize(
    "data",
    [b"not json", b"", b"\xff\xfe\x00garbage", b'{"kind": "allowlist"'],
    ids=["text", "empty", "binary", "truncated"],
)
def test_non_json_envelope_is_refused(signing_key: Ed25519PrivateKey, data: bytes) -> None:
    with pytest.raises(SignatureError, match="envelope is not JSON"):
        verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))


@pytest.mark.parametrize("data", [b"[1, 2]", b'"allowlist"', b"42", b"null"])
def test_non_object_envelope_is_refused(signing_key: Ed25519PrivateKey, data: bytes) -> None:
    with pytest.raises(SignatureError, match="envelope is not an object"):
        verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))


@pytest.mark.parametrize("field", ["payload", "sig"])
@pytest.mark.parametrize("value", ["!!not base64!!", "abc", "héllo", "QUJD\nRA=="])
def test_non_base64_is_refused(signing_key: Ed25519PrivateKey, field: str, value: str) -> None:
    envelope = envelope_of(sign_document(ALLOWLIST_KIND, allowlist_body(), signing_key))
    envelope[field] = value
    with pytest.raises(SignatureError, match="payload or signature is not base64"):
        verify_document(reenvelope(envelope), ALLOWLIST_KIND, trusted_of(signing_key))


def _sign_raw(kind: str, raw: bytes, key: Ed25519PrivateKey) -> bytes:
    """An envelope around arbitrary signed bytes, which sign_document cannot produce."""
    return json.dumps({
        "kind": kind,
        "key_id": key_id(key.public_key()),
        "payload": base64.b64encode(raw).decode(),
        "sig": base64.b64encode(key.sign(b"spbu/" + kind.encode() + b"\n" + raw)).decode(),
    }).encode()


def test_helper_matches_the_real_signature_scheme(signing_key: Ed25519PrivateKey) -> None:
    raw = json.dumps(allowlist_body()).encode()
    assert verify_document(_sign_raw(ALLOWLIST_KIND, raw, signing_key), ALLOWLIST_KIND,
                           trusted_of(signing_key)) == allowlist_body()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"this is not json", "signed payload is not JSON"),
        (b"\xff\xfe", "signed payload is not JSON"),
        (b"[1, 2, 3]", "signed payload is not an object"),
        (b"null", "signed payload is not an object"),
    ],
)
def test_signed_but_malformed_payload_is_refused(
    signing_key: Ed25519PrivateKey, raw: bytes, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_document(_sign_raw(ALLOWLIST_KIND, raw, signing_key), ALLOWLIST_KIND, trusted_of(signing_key))


def test_oversized_envelope_is_refused_before_parsing(
    signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = sign_document(ALLOWLIST_KIND, allowlist_body(), signing_key)
    monkeypatch.setattr(signing, "MAX_ENVELOPE_BYTES", len(data) - 1)
    with pytest.raises(SignatureError, match="envelope too large"):
        verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))
    monkeypatch.setattr(signing, "MAX_ENVELOPE_BYTES", len(data))
    assert verify_document(data, ALLOWLIST_KIND, trusted_of(signing_key))["version"] == 1


def test_key_id_and_public_key_hex(signing_key: Ed25519PrivateKey) -> None:
    public = signing_key.public_key()
    kid = key_id(public)
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert kid != key_id(Ed25519PrivateKey.generate().public_key())
    text = public_key_hex(public)
    assert len(text) == 64
    assert key_id(load_public_key_hex(text)) == kid


@pytest.mark.parametrize(
    ("text", "message"),
    [("zz" * 32, "not hex"), ("ab" * 31, "must be 32 bytes"), ("ab" * 33, "must be 32 bytes"),
     ("", "must be 32 bytes")],
)
def test_load_public_key_hex_rejects(text: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        load_public_key_hex(text)


def test_private_key_save_load(signing_key: Ed25519PrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "hq.pem"
    save_private_key(signing_key, path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_private_key(path)
    assert key_id(loaded.public_key()) == key_id(signing_key.public_key())
    data = sign_document(POLICY_KIND, policy_body(), loaded)
    assert verify_document(data, POLICY_KIND, trusted_of(signing_key)) == policy_body()


def test_load_private_key_rejects_other_algorithms(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SignatureError, match="not an Ed25519 private key"):
        load_private_key(path)


# --- document bodies -------------------------------------------------------------------


def test_allowlist_parses_registry() -> None:
    doc = AllowList.from_body(allowlist_body(version=7))
    assert doc.version == 7
    assert doc.created == dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    assert doc.expires == dt.datetime(2025, 3, 15, tzinfo=dt.UTC)
    assert len(doc.vehicles) == len(REGISTRY)
    for entry in REGISTRY:
        vehicle = doc.lookup(entry.vehicle_id)
        assert vehicle is not None
        assert (vehicle.category, vehicle.products, vehicle.status, vehicle.plate) == (
            entry.category, entry.products, entry.status, entry.plate)
        for product, bit in PRODUCTS.items():
            assert vehicle.allows(product) == bool(entry.products & bit)
    assert doc.lookup(0) is None


def test_allowlist_accepts_extreme_ids_and_offsets() -> None:
    body = allowlist_body(entries=[[1, "motorcycle", 1, STATUS_ACTIVE, "B 1 A"],
                                   [2**64 - 1, "goods_4w", 3, STATUS_SUSPENDED, "L 9999 ZZZ"]])
    body["expires"] = "2025-03-15T07:00:00+07:00"
    doc = AllowList.from_body(body)
    assert set(doc.vehicles) == {1, 2**64 - 1}
    assert doc.expires == dt.datetime(2025, 3, 15, tzinfo=dt.UTC)


GOOD_ENTRY: list[Any] = [42, "private_car", 1, STATUS_ACTIVE, "B 1234 XYZ"]


def _entry(index: int, value: Any) -> list[Any]:
    entry = list(GOOD_ENTRY)
    entry[index] = value
    return entry


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        pytest.param([[42, "private_car", 1, STATUS_ACTIVE]], r"entry 0 must be \[id, category", id="short"),
        pytest.param([[*GOOD_ENTRY, "extra"]], r"entry 0 must be \[id, category", id="long"),
        pytest.param([{"id": 42}], r"entry 0 must be \[id, category", id="object"),
        pytest.param(["42,private_car"], r"entry 0 must be \[id, category", id="string"),
        pytest.param([GOOD_ENTRY, [43]], r"entry 1 must be \[id, category", id="second-entry"),
        pytest.param([_entry(0, 0)], "entry 0: vehicle id must be a 64-bit integer", id="id-zero"),
        pytest.param([_entry(0, -5)], "vehicle id must be a 64-bit integer", id="id-negative"),
        pytest.param([_entry(0, 2**64)], "vehicle id must be a 64-bit integer", id="id-too-big"),
        pytest.param([_entry(0, "42")], "vehicle id must be a 64-bit integer", id="id-string"),
        pytest.param([_entry(0, 42.0)], "vehicle id must be a 64-bit integer", id="id-float"),
        pytest.param([_entry(1, "tractor")], "entry 0: unknown category 'tractor'", id="category"),
        pytest.param([_entry(1, None)], "unknown category None", id="category-null"),
        pytest.param([_entry(2, 4)], "entry 0: bad product mask", id="mask-unknown-bit"),
        pytest.param([_entry(2, -1)], "bad product mask", id="mask-negative"),
        pytest.param([_entry(2, "1")], "bad product mask", id="mask-string"),
        pytest.param([_entry(3, "banned")], "entry 0: bad status 'banned'", id="status"),
        pytest.param([_entry(4, "")], "entry 0: bad plate", id="plate-empty"),
        pytest.param([_entry(4, "X" * 17)], "bad plate", id="plate-long"),
        pytest.param([_entry(4, 1234)], "bad plate", id="plate-int"),
        pytest.param([GOOD_ENTRY, _entry(4, "D 1 A")], "entry 1: duplicate vehicle id 42", id="duplicate"),
    ],
)
def test_allowlist_rejects_bad_entries(entries: list[Any], message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        AllowList.from_body(allowlist_body(entries=entries))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(0, True, id="vehicle-id-true"),
        pytest.param(2, True, id="product-mask-true"),
    ],
)
def test_allowlist_rejects_booleans_for_numbers(field: int, value: object) -> None:
    with pytest.raises(DocumentError):
        AllowList.from_body(allowlist_body(entries=[_entry(field, value)]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"entries": {"42": GOOD_ENTRY}}, "field 'entries' must be a list", id="entries-object"),
        pytest.param({"entries": None}, "field 'entries' must be a list", id="entries-null"),
        pytest.param({"version": 0}, r"field 'version' must be an integer >= 1", id="version-zero"),
        pytest.param({"version": "2"}, "field 'version' must be an integer", id="version-string"),
        pytest.param({"version": True}, "field 'version' must be an integer", id="version-bool"),
        pytest.param({"version": None}, "field 'version' must be an integer", id="version-null"),
        pytest.param({"created": "2025-03-01T00:00:00"}, "field 'created' needs a UTC offset",
                     id="naive-created"),
        pytest.param({"expires": "2025-03-15 12:00"}, "field 'expires' needs a UTC offset",
                     id="naive-expires"),
        pytest.param({"expires": "2025-03-15"}, "field 'expires' needs a UTC offset", id="date-only"),
        pytest.param({"expires": "next tuesday"}, "field 'expires' must be an ISO 8601 time", id="not-iso"),
        pytest.param({"created": 1740787200}, "field 'created' must be an ISO 8601 time", id="epoch"),
    ],
)
def test_allowlist_rejects_bad_header(change: dict[str, Any], message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        AllowList.from_body({**allowlist_body(), **change})


def test_allowlist_missing_fields() -> None:
    for name in ("version", "created", "expires", "entries"):
        body = allowlist_body()
        del body[name]
        with pytest.raises(DocumentError, match=repr(name)):
            AllowList.from_body(body)


def test_policy_parses_litres_into_millilitres() -> None:
    body = policy_body(version=4)
    body["limits_l"]["pertalite"]["motorcycle"] = 7.5
    body["unregistered_l"] = {"pertalite": 5, "avtur": 9}  # unknown products are ignored here
    body["max_fill_l"] = 60
    policy = QuotaPolicy.from_body(body)
    assert policy.version == 4
    assert policy.limit_ml("pertalite", "motorcycle") == 7500
    assert policy.limit_ml("solar", "public_6w_plus") == 200_000
    assert policy.limit_ml("solar", "motorcycle") == 0
    assert policy.unregistered_ml == {"pertalite": 5000}
    assert policy.prices_idr == {"pertalite": 10_000, "solar": 6_800}
    assert policy.max_fill_ml == 60_000


def test_policy_defaults() -> None:
    body = policy_body()
    del body["unregistered_l"], body["max_fill_l"]
    policy = QuotaPolicy.from_body(body)
    assert policy.unregistered_ml == {}
    assert policy.max_fill_ml == 200_000


def _policy_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = policy_body()
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("limits_l",), [], "fields 'limits_l' and 'prices_idr_per_l' must be objects"),
        (("prices_idr_per_l",), None, "must be objects"),
        (("unregistered_l",), [5], "field 'unregistered_l' must be an object"),
        (("limits_l", "premium"), {"private_car": 10}, "limits_l: unknown product 'premium'"),
        (("limits_l", "solar"), 60, r"limits_l: .*'solar'"),
        (("limits_l", "solar", "tractor"), 10, "limits_l.solar: unknown category 'tractor'"),
        (("limits_l", "solar", "goods_4w"), -1, r"limits_l\.solar\.goods_4w must be litres between 0 and"),
        (("limits_l", "solar", "goods_4w"), 10_001, "must be litres between"),
        (("limits_l", "solar", "goods_4w"), "80", "must be litres between"),
        (("limits_l", "solar", "goods_4w"), True, "must be litres between"),
        (("limits_l", "solar", "goods_4w"), float("nan"), "must be litres between"),
        (("prices_idr_per_l", "premium"), 13_000, "prices_idr_per_l: unknown product 'premium'"),
        (("prices_idr_per_l", "solar"), 0, r"prices_idr_per_l.solar must be a positive integer"),
        (("prices_idr_per_l", "solar"), -6800, "must be a positive integer"),
        (("prices_idr_per_l", "solar"), 6800.5, "must be a positive integer"),
        (("prices_idr_per_l", "solar"), True, "must be a positive integer"),
        (("unregistered_l", "solar"), -3, "unregistered_l.solar must be litres"),
        (("max_fill_l",), "full", "max_fill_l must be litres"),
        (("created",), "2025-03-01T00:00:00", "field 'created' needs a UTC offset"),
        (("expires",), "soon", "field 'expires' must be an ISO 8601 time"),
        (("version",), -1, "field 'version' must be an integer >= 1"),
    ],
)
def test_policy_rejects_bad_fields(path: tuple[str, ...], value: Any, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        QuotaPolicy.from_body(_policy_with(path, value))


# --- document store --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, signing_key: Ed25519PrivateKey) -> DocumentStore:
    return DocumentStore(tmp_path, trusted_hex(signing_key))


def signed_allowlist(key: Ed25519PrivateKey, version: int, entries: list[list[Any]] | None = None) -> bytes:
    return sign_document(ALLOWLIST_KIND, allowlist_body(version, entries), key)


def signed_policy(key: Ed25519PrivateKey, version: int) -> bytes:
    return sign_document(POLICY_KIND, policy_body(version), key)


def test_store_installs_and_persists(store: DocumentStore, signing_key: Ed25519PrivateKey) -> None:
    assert store.allowlist is None and store.policy is None
    data = signed_policy(signing_key, 3)
    result = store.offer(POLICY_KIND, data)
    assert (result.kind, result.accepted, result.version, result.detail) == (POLICY_KIND, True, 3, "installed")
    assert store.policy is not None and store.policy.version == 3
    assert store.path(POLICY_KIND).read_bytes() == data
    assert not [p for p in store.data_dir.iterdir() if p.name.endswith(".tmp")]


def test_store_moves_forward(store: DocumentStore, signing_key: Ed25519PrivateKey) -> None:
    store.offer(POLICY_KIND, signed_policy(signing_key, 3))
    newer = signed_policy(signing_key, 10)
    result = store.offer(POLICY_KIND, newer)
    assert result.accepted and result.version == 10
    assert store.policy is not None and store.policy.version == 10
    assert store.path(POLICY_KIND).read_bytes() == newer


def test_store_rejects_rollback_and_keeps_serving(store: DocumentStore, signing_key: Ed25519PrivateKey) -> None:
    current = signed_policy(signing_key, 5)
    assert store.offer(POLICY_KIND, current).accepted
    result = store.offer(POLICY_KIND, signed_policy(signing_key, 4))
    assert (result.accepted, result.version) == (False, 4)
    assert result.detail == "rollback: version 4 < 5 in force"
    assert store.policy is not None and store.policy.version == 5
    assert store.path(POLICY_KIND).read_bytes() == current


def test_store_same_version_is_already_current(store: DocumentStore, signing_key: Ed25519PrivateKey) -> None:
    current = signed_policy(signing_key, 5)
    store.offer(POLICY_KIND, current)
    body = {**policy_body(5), "max_fill_l": 50}  # same version, different content
    result = store.offer(POLICY_KIND, sign_document(POLICY_KIND, body, signing_key))
    assert (result.accepted, result.version, result.detail) == (False, 5, "already current")
    assert store.policy is not None and store.policy.max_fill_ml == 200_000
    assert store.path(POLICY_KIND).read_bytes() == current


def test_store_rejects_unverified_and_malformed(store: DocumentStore, signing_key: Ed25519PrivateKey) -> None:
    current = signed_policy(signing_key, 5)
    store.offer(POLICY_KIND, current)
    result = store.offer(POLICY_KIND, signed_policy(Ed25519PrivateKey.generate(), 6))
    assert (result.accepted, result.version) == (False, 0)
    assert result.detail.startswith("unknown signing key")
    malformed = sign_document(POLICY_KIND, {**policy_body(7), "limits_l": {"avtur": {}}}, signing_key)
    result = store.offer(POLICY_KIND, malformed)
    assert not result.accepted and result.detail == "limits_l: unknown product 'avtur'"
    result = store.offer(POLICY_KIND, signed_allowlist(signing_key, 8))
    assert not result.accepted and result.detail.startswith("wrong kind")
    # The allow-list is no longer a single document: offering one changes nothing.
    result = store.offer(ALLOWLIST_KIND, signed_allowlist(signing_key, 9))
    assert not result.accepted and "manifest" in result.detail
    assert store.allowlist is None
    assert store.policy is not None and store.policy.version == 5
    assert store.path(POLICY_KIND).read_bytes() == current


def test_store_failed_write_leaves_old_file_and_document(
    store: DocumentStore, signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = signed_policy(signing_key, 1)
    store.offer(POLICY_KIND, current)

    def power_cut(src: object, dst: object) -> None:
        raise OSError("power cut before rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.offer(POLICY_KIND, signed_policy(signing_key, 2))
    assert store.policy is not None and store.policy.version == 1
    assert store.path(POLICY_KIND).read_bytes() == current


def test_load_saved_reverifies_on_a_fresh_store(
    tmp_path: Path, store: DocumentStore, signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.offer(POLICY_KIND, signed_policy(signing_key, 2))

    def no_writes(path: Path, data: bytes) -> None:
        raise AssertionError("load_saved must not rewrite what it loads")

    monkeypatch.setattr(docstore, "atomic_write", no_writes)
    fresh = DocumentStore(tmp_path, trusted_hex(signing_key))
    results = fresh.load_saved()
    assert [(r.kind, r.accepted, r.version, r.detail) for r in results] == [(POLICY_KIND, True, 2, "installed")]
    assert fresh.policy == store.policy


def test_load_saved_with_nothing_saved(tmp_path: Path, signing_key: Ed25519PrivateKey) -> None:
    fresh = DocumentStore(tmp_path, trusted_hex(signing_key))
    assert fresh.load_saved() == []
    assert fresh.allowlist is None and fresh.policy is None


@pytest.mark.parametrize(
    ("corrupt", "detail"),
    [
        pytest.param(lambda data: data[: len(data) // 2], "envelope is not JSON", id="truncated"),
        pytest.param(lambda data: b"", "envelope is not JSON", id="empty"),
        pytest.param(lambda data: bytes(len(data)), "envelope is not JSON", id="zeroed"),
        pytest.param(lambda data: flip_payload_bit(data, 5), "bad signature", id="bit-flip"),
    ],
)
def test_load_saved_reports_corrupt_file_not_trusted(
    tmp_path: Path, store: DocumentStore, signing_key: Ed25519PrivateKey,
    corrupt: Callable[[bytes], bytes], detail: str,
) -> None:
    store.offer(POLICY_KIND, signed_policy(signing_key, 2))
    path = store.path(POLICY_KIND)
    path.write_bytes(corrupt(path.read_bytes()))
    fresh = DocumentStore(tmp_path, trusted_hex(signing_key))
    [result] = fresh.load_saved()
    assert not result.accepted and result.detail == detail
    assert fresh.policy is None


def test_load_saved_with_untrusted_signer_is_rejected(tmp_path: Path, store: DocumentStore,
                                                      signing_key: Ed25519PrivateKey) -> None:
    store.offer(POLICY_KIND, signed_policy(signing_key, 3))
    rotated = DocumentStore(tmp_path, trusted_hex(Ed25519PrivateKey.generate()))
    [result] = rotated.load_saved()
    assert not result.accepted and result.detail.startswith("unknown signing key")
    assert rotated.policy is None


def test_store_accepts_headquarters_simulator_documents(tmp_path: Path) -> None:
    hq = HeadquartersSim("127.0.0.1", 1, synthetic_registry(10, seed=3))  # never started: no network
    hq.install_into(tmp_path)
    store = DocumentStore(tmp_path, {hq.key_id: hq.public_key_hex})
    results = store.load_saved()
    assert [(r.kind, r.accepted) for r in results] == [(ALLOWLIST_KIND, True), (POLICY_KIND, True)]
    assert store.allowlist is not None and store.allowlist.store.count == 10
    for entry in hq.registry:
        vehicle = store.allowlist.lookup(entry.vehicle_id)
        assert vehicle is not None and (vehicle.category, vehicle.products, vehicle.status) == (
            entry.category, entry.products, entry.status)
    assert store.offer(POLICY_KIND, hq.signed_policy_tuf(1)).detail == "already current"
