"""Test certificate authority and certificates for the MQTT links (`spbu keys ca|station-cert|
server-cert`).

Each station's broker bridges to headquarters over TLS with its own client certificate,
CN = station id; headquarters' broker maps the CN to the MQTT username
(use_identity_as_username) and its ACL lets a station write only under its own
`spbu/v1/<station>/` and read only its own acknowledgements and commands. Keys are EC
P-256 (what mosquitto, EMQX and HiveMQ all take). A production CA lives at headquarters
(offline or in an HSM); this one is for tests, the demo and labs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.config import STATION_ID

SERVICE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.")


class PkiError(ValueError):
    pass


@dataclass(frozen=True)
class Issued:
    key: Path | None  # None when the certificate was made for a CSR (the key stays where it is)
    cert: Path


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey, force: bool) -> None:
    if path.exists() and not force:
        raise PkiError(f"{path} exists; use --force to replace it")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_ca(out: Path, name: str = "SPBU test CA", days: int = 3650, force: bool = False) -> Issued:
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spbu-edge")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(out / "ca.key", key, force)
    (out / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(out / "ca.key", out / "ca.crt")


def load_ca(ca_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{ca_dir}: no usable ca.key and ca.crt ({exc}); make one with spbu keys ca") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{ca_dir / 'ca.key'} is not an EC key")
    return key, cert


def check_common_name(name: str) -> str:
    """A station id, or a lowercase service name (hq-collector, dashboard)."""
    if STATION_ID.fullmatch(name) or (name and set(name) <= SERVICE_NAME_CHARS and name[0].isalpha()):
        return name
    raise PkiError(f"{name!r} is neither a station id like 34.401.01 nor a service name like hq-collector")


def issue(ca_dir: Path, out: Path, common_name: str, csr_path: Path | None = None, server_names: tuple[str, ...] = (),
          days: int = 825, force: bool = False) -> Issued:
    """A client certificate for common_name (a station or a service), or with server_names a
    broker's server certificate. With csr_path the station's own key (spbu provision) is kept."""
    ca_key, ca_cert = load_ca(ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = check_common_name(common_name) if not server_names else server_names[0]
    key_path: Path | None = None
    if csr_path is not None:
        try:
            csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise PkiError(f"{csr_path}: not a PEM certificate request ({exc})") from exc
        if not csr.is_signature_valid:
            raise PkiError(f"{csr_path}: the request's signature does not verify")
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or names[0].value != common_name:
            raise PkiError(f"{csr_path}: the request is for {names[0].value if names else 'no CN'!r}, "
                           f"not {common_name!r}")
        public_key = csr.public_key()
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = out / f"{stem}.key"
        _write_private(key_path, key, force)
        public_key = key.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError("only EC keys are issued certificates here")
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spbu-edge")]))
               .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server_names:
        alt: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = (builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path = out / f"{stem}.crt"
    if cert_path.exists() and not force:
        raise PkiError(f"{cert_path} exists; use --force to replace it")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key_path, cert_path)


def write_crl(ca_dir: Path, days: int = 30) -> Path:
    """ca_dir/crl.pem: the CA's revocation list of every serial in ca_dir/revoked (hex, one a
    line). Headquarters' broker checks each client certificate against it (crlfile), so a
    station certificate (valid 825 days) can be shut out at once; re-issue it before
    `days` pass, or the broker refuses everyone."""
    ca_key, ca_cert = load_ca(ca_dir)
    listed = ca_dir / "revoked"
    serials = [int(line, 16) for line in listed.read_text().split()] if listed.exists() else []
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    path = ca_dir / "crl.pem"
    path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def revoke(ca_dir: Path, cert_path: Path) -> Path:
    """Add a certificate to the CA's revocation list; returns the new CRL's path."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{cert_path}: not a PEM certificate ({exc})") from exc
    with (ca_dir / "revoked").open("a") as handle:
        handle.write(f"{cert.serial_number:x}\n")
    return write_crl(ca_dir)
