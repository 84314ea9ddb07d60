"""Signed QR tokens: sign/verify, each way of tampering refused for its own reason, and a
parser that never raises anything but TokenRefused (hypothesis)."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.messages import attendant_line
from agent.qr.base45 import ALPHABET, Base45Error, b45decode, b45encode
from agent.qr.identify import identify, keyring_from_hex
from agent.qr.legacy_ids import legacy_vehicle_id
from agent.qr.tokens import (
    FORGED,
    MALFORMED,
    MAX_TEXT_LEN,
    PLATE_ALTERED,
    PREFIX,
    UNKNOWN_KEY,
    TokenRefused,
    issue_token,
    verify_token,
)
from agent.trust.signing import key_id, public_key_hex

KEY = Ed25519PrivateKey.generate()
RING = {key_id(KEY.public_key()): KEY.public_key()}
DAY = dt.date(2026, 11, 23)
QR_ALNUM = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def refusal(text: str, ring: dict = RING) -> str:  # type: ignore[type-arg]
    with pytest.raises(TokenRefused) as info:
        verify_token(text, ring)
    return info.value.reason


def test_round_trip_fits_qr_alphanumeric_and_200_chars() -> None:
    text = issue_token(2**64 - 1, "ab 1234  xyz", DAY, KEY)
    assert text.startswith(PREFIX) and len(text) <= MAX_TEXT_LEN and set(text) <= QR_ALNUM
    token = verify_token(text, RING)
    assert (token.vehicle_id, token.plate, token.issued) == (2**64 - 1, "AB 1234 XYZ", DAY)
    assert token.key_id == key_id(KEY.public_key())
    longest = issue_token(1, "KT 9999 ABCD", DAY, KEY)
    assert len(longest) <= MAX_TEXT_LEN


def _edit_plate(text: str, new_plate: str, fix_check: bool = False) -> str:
    raw = bytearray(b45decode(text[len(PREFIX):]))
    n = raw[21]
    assert len(new_plate) == n
    raw[22:22 + n] = new_plate.encode()
    if fix_check:
        import hashlib
        raw[19:21] = hashlib.sha256(b"spbu/plate\n" + new_plate.encode()).digest()[:2]
    return PREFIX + b45encode(bytes(raw))


def test_forged_unknown_key_and_altered_plate_are_told_apart() -> None:
    good = issue_token(777, "B 1234 XYZ", DAY, KEY)
    other = Ed25519PrivateKey.generate()
    assert refusal(issue_token(777, "B 1234 XYZ", DAY, other)) == UNKNOWN_KEY
    # A signature made with another key but labelled with ours: forged.
    raw = bytearray(b45decode(issue_token(777, "B 1234 XYZ", DAY, other)[len(PREFIX):]))
    raw[11:19] = bytes.fromhex(key_id(KEY.public_key()))
    assert refusal(PREFIX + b45encode(bytes(raw))) == FORGED
    # Someone edits the printed plate to use another car's quota.
    assert refusal(_edit_plate(good, "B 1234 XYA")) == PLATE_ALTERED
    # ... and a careful forger who also fixes the unkeyed plate check is still refused.
    assert refusal(_edit_plate(good, "B 1234 XYA", fix_check=True)) == FORGED
    # Vehicle id or date changed: the signature no longer holds.
    raw = bytearray(b45decode(good[len(PREFIX):]))
    raw[8] ^= 1
    assert refusal(PREFIX + b45encode(bytes(raw))) == FORGED


def test_each_refusal_has_its_own_attendant_line() -> None:
    for lang in ("id", "en"):
        lines = {r: attendant_line(lang, r, pump=2, plate="B 1234 XYA") for r in (FORGED, UNKNOWN_KEY, PLATE_ALTERED)}
        assert len(set(lines.values())) == 3
        assert "B 1234 XYA" in lines[PLATE_ALTERED]
        assert attendant_line(lang, MALFORMED, pump=2) not in lines.values()


def test_malformed_tokens() -> None:
    good = issue_token(5, "D 1 A", DAY, KEY)
    for bad in ("", "SPBU2:", "SPBU1:5", good[:-1], good[:-3], good + "00", PREFIX + "ab", good + "0" * 200):
        assert refusal(bad) == MALFORMED, bad


def test_invalid_inputs_to_issue() -> None:
    for vid, plate in ((0, "B 1"), (2**64, "B 1"), (1, ""), (1, "B-1"), (1, "ABCDEFGHIJKLM")):
        with pytest.raises(ValueError):
            issue_token(vid, plate, DAY, KEY)


def test_identify_signed_legacy_and_no_salt() -> None:
    ring = keyring_from_hex({key_id(KEY.public_key()): public_key_hex(KEY.public_key()), "bad": "zz"})
    assert set(ring) == set(RING)
    ident = identify(issue_token(9, "F 77 Q", DAY, KEY), ring, None)
    assert (ident.vehicle_id, ident.plate, ident.reason) == (9, "F 77 Q", "")
    salt = bytes(range(16))
    assert identify("OLD-CARD-00017", ring, salt).vehicle_id == legacy_vehicle_id("OLD-CARD-00017", salt)
    assert identify("OLD-CARD-00017", ring, None).reason == MALFORMED
    forged = identify(_edit_plate(issue_token(9, "F 77 Q", DAY, KEY), "F 77 R"), ring, salt)
    assert (forged.vehicle_id, forged.reason, forged.plate) == (None, PLATE_ALTERED, "F 77 R")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_base45_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60))
def test_base45_decode_never_raises_other_errors(text: str) -> None:
    with contextlib.suppress(Base45Error):
        b45decode(text)


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(max_size=220),
    st.text(alphabet=ALPHABET, max_size=200).map(lambda t: PREFIX + t),
    st.tuples(st.integers(0, 150), st.integers(0, 255)).map(
        lambda p: _flip(issue_token(123456, "B 1234 XYZ", DAY, KEY), *p)),
))
def test_token_parser_never_crashes_and_never_accepts_junk(text: str) -> None:
    try:
        token = verify_token(text, RING)
    except TokenRefused as refused:
        assert refused.reason in (MALFORMED, UNKNOWN_KEY, FORGED, PLATE_ALTERED)
        return
    # Only the untouched original can verify.
    assert (token.vehicle_id, token.plate) == (123456, "B 1234 XYZ")


def _flip(text: str, index: int, value: int) -> str:
    raw = bytearray(b45decode(text[len(PREFIX):]))
    raw[index % len(raw)] = value
    return PREFIX + b45encode(bytes(raw))
