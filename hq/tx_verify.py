"""Headquarters' check of a transaction record's station signature (agent/trust/tx_sign.py).

The collector stores and acknowledges only records signed by the station the topic
names, with the key of that station's certificate issued by the SPBU CA. Anything
unsigned, signed by another key, or altered after signing is refused: it is neither
stored nor acknowledged (a real station's outbox keeps it and alarms; a forger gets
nothing). Kept apart from the collector so the storage behind it can change freely.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.trust.tx_sign import ALG, DOMAIN, key_fingerprint, signed_bytes


class TxSignatureError(ValueError):
    pass


def station_of_certificate(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


@dataclass
class StationKeys:
    """Each station's public key, from the certificates headquarters issued (CN = station)."""

    keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)

    def add(self, station: str, public: ec.EllipticCurvePublicKey) -> None:
        self.keys[station] = public

    def add_certificate(self, pem: bytes, ca: x509.Certificate | None = None) -> str:
        """A station certificate (checked against the CA when given); returns its station."""
        cert = x509.load_pem_x509_certificate(pem)
        if ca is not None:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise TxSignatureError(f"certificate not issued by the SPBU CA: {exc}") from exc
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise TxSignatureError("station certificate has no EC key")
        station = station_of_certificate(cert)
        self.add(station, public)
        return station

    @classmethod
    def from_directory(cls, certs: Path, ca_path: Path | None = None) -> StationKeys:
        """Every *.crt in a directory of issued station certificates."""
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes()) if ca_path is not None else None
        found = cls()
        for path in sorted(certs.glob("*.crt")):
            found.add_certificate(path.read_bytes(), ca)
        return found

    def verify(self, record: dict[str, Any], domain: bytes = DOMAIN) -> None:
        """Raise TxSignatureError unless the record carries its station's valid signature
        (domain: what kind of message it is, agent/trust/tx_sign.py)."""
        station = record.get("station")
        public = self.keys.get(station) if isinstance(station, str) else None
        if public is None:
            raise TxSignatureError(f"no key for station {station!r}")
        sig = record.get("sig")
        if not isinstance(sig, dict) or sig.get("alg") != ALG:
            raise TxSignatureError("record is not signed")
        if sig.get("key") != key_fingerprint(public):
            raise TxSignatureError("signed with another key than the station's certificate")
        try:
            value = base64.b64decode(str(sig.get("value", "")), validate=True)
            public.verify(value, signed_bytes(record, domain), ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature) as exc:
            raise TxSignatureError("signature does not verify") from exc


class Verifier(Protocol):
    """StationKeys.verify, or anything that checks a station's message the same way."""

    def __call__(self, record: dict[str, Any], domain: bytes = DOMAIN) -> None: ...
