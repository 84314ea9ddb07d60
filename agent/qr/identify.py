"""Scanned QR text -> who it claims to be: a verified signed token, or a legacy opaque
text mapped through the keyed hash. Pure logic; the station decides eligibility after."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.qr.legacy_ids import MAX_LEGACY_LEN, SALT_BYTES, legacy_vehicle_id
from agent.qr.tokens import MALFORMED, Keyring, TokenRefused, looks_signed, verify_token
from agent.trust.signing import SignatureError, load_public_key_hex


@dataclass(frozen=True)
class ScanIdentity:
    vehicle_id: int | None
    plate: str = ""  # from a signed token: what the attendant matches against the vehicle
    reason: str = ""  # a refusal code when vehicle_id is None
    detail: str = ""
    issued: dt.date | None = None  # a signed token's issue day
    legacy: bool = False  # an unsigned legacy text: never the unregistered allowance


def keyring_from_hex(keys: dict[str, str]) -> Keyring:
    """The `tokens` keyring from configured hex keys (until the trust root provides roles)."""
    ring: dict[str, Ed25519PublicKey] = {}
    for kid, text in keys.items():
        try:
            ring[kid] = load_public_key_hex(text)
        except SignatureError:
            continue
    return ring


def identify(text: str, keyring: Keyring, legacy_salt: bytes | None) -> ScanIdentity:
    if looks_signed(text):
        try:
            token = verify_token(text, keyring)
        except TokenRefused as refused:
            return ScanIdentity(None, refused.plate, refused.reason, str(refused))
        return ScanIdentity(token.vehicle_id, token.plate, issued=token.issued)
    # Anything else is a legacy opaque text; without the manifest's salt it cannot be mapped.
    if legacy_salt is None or len(legacy_salt) != SALT_BYTES:
        return ScanIdentity(None, reason=MALFORMED, detail="legacy QR text and no salt")
    if not text.strip() or len(text.strip().encode()) > MAX_LEGACY_LEN:
        return ScanIdentity(None, reason=MALFORMED, detail="empty or over-long QR text")
    return ScanIdentity(legacy_vehicle_id(text, legacy_salt), legacy=True)


def legacy_salt_of(allowlist: object) -> bytes | None:
    """The allow-list manifest's salt, once the list carries one."""
    salt = getattr(allowlist, "salt", None)
    return salt if isinstance(salt, bytes) else None
