"""Transaction records signed with the station's own key, verified at headquarters.

The broker authenticates who connects, but a record crosses the station broker, the
bridge and headquarters' broker; only a signature made by the station shows that the
station's agent wrote it. The key is the station's EC P-256 key that `spbu provision`
makes for its TLS certificate (CN = station id): headquarters already holds the
certificate, so it needs nothing new to verify.

The signature is ECDSA P-256 / SHA-256 over b"spbu/tx\\n" + the canonical JSON of the
record without its `sig` field (sorted keys, no spaces, UTF-8), and travels in the record:

    "sig": {"alg": "ES256", "key": "<first 16 hex of SHA-256 of the public key (SPKI DER)>",
            "value": "<base64 DER signature>"}
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALG = "ES256"
DOMAIN = b"spbu/tx\n"
# The national quota's messages from stations are signed the same way, each under its own
# domain, so none can pass for another (a reservation for a transaction, or the reverse).
RESERVE_DOMAIN = b"spbu/reserve\n"
USAGE_SYNC_DOMAIN = b"spbu/usage_sync\n"


class StationKeyError(ValueError):
    pass


def signed_bytes(record: dict[str, Any], domain: bytes = DOMAIN) -> bytes:
    body = {k: v for k, v in record.items() if k != "sig"}
    return domain + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_fingerprint(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def load_station_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StationKeyError(f"station key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise StationKeyError(f"station key {path} is not an EC P-256 key")
    return key


def sign_record(record: dict[str, Any], key: ec.EllipticCurvePrivateKey,
                domain: bytes = DOMAIN) -> dict[str, Any]:
    """The record with its `sig` (a new dict; the caller's stays as it was)."""
    value = key.sign(signed_bytes(record, domain), ec.ECDSA(hashes.SHA256()))
    return {**record, "sig": {"alg": ALG, "key": key_fingerprint(key.public_key()),
                              "value": base64.b64encode(value).decode()}}
