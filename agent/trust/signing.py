"""Ed25519 signed envelopes for documents headquarters distributes (allow-list, quota policy).

Envelope (JSON): {"kind", "key_id", "payload": base64(body JSON), "sig": base64}.
The signature covers b"spbu/" + kind + b"\\n" + body, so a document of one kind can never
be replayed as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024


class SignatureError(ValueError):
    """A signed document failed a check; the message names which one."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_hex(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def load_public_key_hex(text: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise SignatureError("public key is not hex") from exc
    if len(raw) != 32:
        raise SignatureError("public key must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:  # a public key, hex, a password-protected or damaged file
        raise SignatureError(f"{path} is not a PEM private key ({exc.__class__.__name__}); give the .key file "
                             "(`spbu keys generate` made it), not the .pub") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 private key")
    return key


def _signed_bytes(kind: str, body: bytes) -> bytes:
    return b"spbu/" + kind.encode() + b"\n" + body


def sign_document(kind: str, body: dict[str, Any], key: Ed25519PrivateKey) -> bytes:
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    envelope = {
        "kind": kind,
        "key_id": key_id(key.public_key()),
        "payload": base64.b64encode(raw).decode(),
        "sig": base64.b64encode(key.sign(_signed_bytes(kind, raw))).decode(),
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def verify_document(
    data: bytes, kind: str, trusted: dict[str, Ed25519PublicKey]
) -> dict[str, Any]:
    """Return the verified body, or raise SignatureError naming the failed check."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise SignatureError("envelope too large")
    try:
        envelope = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError("envelope is not JSON") from exc
    if not isinstance(envelope, dict):
        raise SignatureError("envelope is not an object")
    if envelope.get("kind") != kind:
        raise SignatureError(f"wrong kind {envelope.get('kind')!r}, expected {kind!r}")
    kid = envelope.get("key_id")
    if not isinstance(kid, str) or kid not in trusted:
        raise SignatureError(f"unknown signing key {kid!r}")
    try:
        raw = base64.b64decode(str(envelope.get("payload", "")), validate=True)
        sig = base64.b64decode(str(envelope.get("sig", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("payload or signature is not base64") from exc
    try:
        trusted[kid].verify(sig, _signed_bytes(kind, raw))
    except InvalidSignature as exc:
        raise SignatureError("bad signature") from exc
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SignatureError("signed payload is not JSON") from exc
    if not isinstance(body, dict):
        raise SignatureError("signed payload is not an object")
    return body
