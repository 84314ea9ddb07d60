"""The station manager's command key, derived from a signing passphrase.

The passphrase is not the dashboard's broker password: that one is sent to mosquitto at
every connect and mosquitto keeps only a weak hash of it (PBKDF2, 101 rounds), so anyone
who learns it could otherwise derive the key and command pumps. The passphrase is typed
into the dashboard, used in the browser only (PBKDF2-HMAC-SHA256, 100,000 rounds, salted
with station and user name) and never leaves the tablet; the station trusts only the
public key (`spbu keys manager --passphrase-file`), kept in its root-only config. The
dashboard (dashboard/src/vendor.js) derives the same key to sign commands, and the
broker's ACL separately limits what the dashboard user may publish. A stolen broker
password lets someone watch the dashboard; it does not sign anything.
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
