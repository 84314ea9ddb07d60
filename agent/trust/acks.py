"""Signed application-level acknowledgements, on `hq/v1/ack/<station>`.

An acknowledgement deletes transactions from the station's outbox, so an unsigned one
would let anyone on the broker delete sales headquarters never stored. Headquarters'
collectors sign each with a key of the trust root's `acks` role (falling back to
`commands` for roots that do not name one), as an envelope of kind "ack"
(agent/trust/signing.py) whose body binds the station:

    {"station": "34.401.01", "ids": ["<tx_id>", ...], "at": "2026-11-20T08:00:00+00:00"}

`at` is headquarters' time when it stored them: signed, so the station's clock guard may
use it as a floor and as the anchor of its forward bound (agent/clock.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.trust.root import TrustStore
from agent.trust.signing import SignatureError, sign_document, verify_document

ACK_KIND = "ack"
ACK_ROLE = "acks"
MAX_IDS = 1000
MAX_ACK_BYTES = 256 * 1024


def ack_keyring(trust: TrustStore) -> dict[str, Ed25519PublicKey]:
    """The `acks` role's keys; a root that names none leaves acknowledgements to `commands`."""
    return trust.keyring(ACK_ROLE if ACK_ROLE in trust.root.roles else "commands")


class AckRefused(ValueError):
    pass


@dataclass(frozen=True)
class Ack:
    ids: tuple[str, ...]
    at: dt.datetime


def sign_ack(key: Ed25519PrivateKey, station: str, ids: list[str], at: dt.datetime | None = None) -> bytes:
    moment = (at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    return sign_document(ACK_KIND, {"station": station, "ids": list(ids), "at": moment.isoformat()}, key)


def verify_ack(data: bytes, station: str, keyring: dict[str, Ed25519PublicKey]) -> Ack:
    """The acknowledgement, or AckRefused naming the failed check."""
    if len(data) > MAX_ACK_BYTES:
        raise AckRefused("acknowledgement too large")
    try:
        body = verify_document(data, ACK_KIND, keyring)
    except SignatureError as exc:
        raise AckRefused(f"not signed by headquarters: {exc}") from None
    if body.get("station") != station:
        raise AckRefused(f"for station {body.get('station')!r}")
    ids = body.get("ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_IDS or not all(isinstance(i, str) for i in ids):
        raise AckRefused(f"ids must be 1 to {MAX_IDS} strings")
    try:
        at = dt.datetime.fromisoformat(str(body.get("at")))
    except ValueError:
        raise AckRefused("at is not an ISO time") from None
    if at.tzinfo is None:
        raise AckRefused("at has no time zone")
    return Ack(tuple(ids), at)
