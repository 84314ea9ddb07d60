"""The station manager's command key, derived from the dashboard password.

The dashboard runs in a browser on the station's LAN, usually over plain HTTP where no
key store is available, so the manager's Ed25519 signing key is derived from what the
manager types: PBKDF2-HMAC-SHA256 over the password, salted with the station and user
name. The station trusts only the public key (`spbu keys manager`), which lives in its
root-only config; the dashboard (dashboard/src/vendor.js) derives the same key to sign
commands, and the broker's ACL separately limits what the dashboard user may publish.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KDF_ITERATIONS = 100_000  # dashboard/src/vendor.js KDF_ITERATIONS: keep in step
MIN_PASSWORD_LEN = 10


def manager_key(station: str, username: str, password: str) -> Ed25519PrivateKey:
    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"the manager's password must have at least {MIN_PASSWORD_LEN} characters")
    salt = f"spbu-manager:{station}:{username}".encode()
    seed = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, KDF_ITERATIONS, dklen=32)
    return Ed25519PrivateKey.from_private_bytes(seed)
