"""Signed QR tokens: headquarters signs (vehicle id, plate, issue date) with Ed25519, the
agent verifies offline against the `tokens` keyring. Format: docs/qr-token.md.

Text: "SPBU2:" + base45(body + signature), QR alphanumeric mode only, at most 200 chars.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.qr.base45 import Base45Error, b45decode, b45encode
from agent.trust.signing import key_id

VERSION = 2
PREFIX = "SPBU2:"
MAX_TEXT_LEN = 200
MAX_PLATE_LEN = 12
SIG_LEN = 64
_HEAD_LEN = 1 + 8 + 2 + 8 + 2 + 1  # version, vehicle id, issue day, key id, plate check, plate length
_EPOCH = dt.date(1970, 1, 1)
_SIGNED_DOMAIN = b"spbu/qr-token\n"
_PLATE_RE = re.compile(r"[A-Z0-9]+( [A-Z0-9]+)*")

# Why a token was refused (codes shared with agent/messages.py).
MALFORMED = "unknown_qr"
UNKNOWN_KEY = "token_unknown_key"
FORGED = "token_forged"
PLATE_ALTERED = "token_plate_altered"

Keyring = dict[str, Ed25519PublicKey]


class TokenRefused(ValueError):
    """A token failed a check; `reason` is one of the refusal codes above."""

    def __init__(self, reason: str, detail: str, plate: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.plate = plate


@dataclass(frozen=True)
class SignedToken:
    vehicle_id: int
    plate: str
    issued: dt.date
    key_id: str


def normalise_plate(plate: str) -> str:
    """'b 1234  xyz' -> 'B 1234 XYZ'; raises ValueError for what no plate looks like."""
    text = " ".join(plate.upper().split())
    if not 0 < len(text) <= MAX_PLATE_LEN or not _PLATE_RE.fullmatch(text):
        raise ValueError(f"plate must be 1 to {MAX_PLATE_LEN} letters, digits and single spaces")
    return text


def _plate_check(plate: bytes) -> bytes:
    # Unkeyed on purpose: it only tells an edited plate (check left stale) from a forged
    # signature; the signature alone decides whether a token is accepted.
    return hashlib.sha256(b"spbu/plate\n" + plate).digest()[:2]


def issue_token(vehicle_id: int, plate: str, issued: dt.date, key: Ed25519PrivateKey) -> str:
    if not 0 < vehicle_id < 2**64:
        raise ValueError("vehicle id must be a positive 64-bit integer")
    plate_raw = normalise_plate(plate).encode("ascii")
    day = (issued - _EPOCH).days
    if not 0 <= day < 2**16:
        raise ValueError("issue date out of range")
    body = (bytes([VERSION]) + vehicle_id.to_bytes(8, "big") + day.to_bytes(2, "big")
            + bytes.fromhex(key_id(key.public_key())) + _plate_check(plate_raw)
            + bytes([len(plate_raw)]) + plate_raw)
    return PREFIX + b45encode(body + key.sign(_SIGNED_DOMAIN + body))


def looks_signed(text: str) -> bool:
    return text.startswith(PREFIX)


def verify_token(text: str, keyring: Keyring) -> SignedToken:
    """The verified token, or TokenRefused naming why (malformed, unknown key, forged,
    plate altered). Never raises anything else, whatever the input."""
    if len(text) > MAX_TEXT_LEN or not text.startswith(PREFIX):
        raise TokenRefused(MALFORMED, "not a signed SPBU token")
    try:
        raw = b45decode(text[len(PREFIX):])
    except Base45Error as exc:
        raise TokenRefused(MALFORMED, str(exc)) from None
    if len(raw) < _HEAD_LEN + 1 + SIG_LEN or raw[0] != VERSION:
        raise TokenRefused(MALFORMED, "token too short or of another version")
    plate_len = raw[_HEAD_LEN - 1]
    body_len = _HEAD_LEN + plate_len
    if len(raw) != body_len + SIG_LEN:
        raise TokenRefused(MALFORMED, "token length does not match its plate length")
    body, sig = raw[:body_len], raw[body_len:]
    vehicle_id = int.from_bytes(body[1:9], "big")
    issued = _EPOCH + dt.timedelta(days=int.from_bytes(body[9:11], "big"))
    kid = body[11:19].hex()
    check, plate_raw = body[19:21], body[_HEAD_LEN:]
    try:
        plate = plate_raw.decode("ascii")
        if normalise_plate(plate) != plate:
            raise ValueError(plate)
    except ValueError:
        raise TokenRefused(MALFORMED, "plate is not a plate number") from None
    if vehicle_id == 0:
        raise TokenRefused(MALFORMED, "vehicle id 0")
    public = keyring.get(kid)
    if public is None:
        raise TokenRefused(UNKNOWN_KEY, f"signed by unknown key {kid}", plate)
    try:
        public.verify(sig, _SIGNED_DOMAIN + body)
    except InvalidSignature:
        if check != _plate_check(plate_raw):
            raise TokenRefused(PLATE_ALTERED, "plate does not match what was signed", plate) from None
        raise TokenRefused(FORGED, "bad signature", plate) from None
    return SignedToken(vehicle_id, plate, issued, kid)
