"""`spbu provision`: turn a freshly installed Pi into station N.

Writes /etc/spbu/agent.toml, makes the station's TLS key and a certificate signing request
for headquarters (CN = station id), installs headquarters' allow-list signing keys as the
root of trust, checks that the configured devices are there, and prints a checklist.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import STATION_ID, ConfigError, PumpConfig, StationConfig, load_config, render_config
from agent.domain import PRODUCTS, ZONES
from agent.trust.signing import SignatureError, key_id, load_public_key_hex

# install.sh lays down the example config; it carries this line and may be replaced freely.
EXAMPLE_MARKER = "this example key is public"


class ProvisionError(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    item: str
    ok: bool
    detail: str


def parse_pump(text: str, channel: int, pulses_per_litre: int) -> PumpConfig:
    """'1:pertalite:/dev/spbu-scanner-1' -> PumpConfig on the given board channel."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in PRODUCTS or not parts[2]:
        raise ProvisionError(f"--pump {text!r}: expected NUMBER:PRODUCT:SCANNER, e.g. 1:pertalite:/dev/spbu-scanner-1")
    return PumpConfig(int(parts[0]), parts[1], channel, parts[2], pulses_per_litre)


def read_trust(paths: list[Path]) -> dict[str, str]:
    keys = {}
    for path in paths:
        try:
            hexkey = path.read_text().split()[0]
            keys[key_id(load_public_key_hex(hexkey))] = hexkey
        except (OSError, IndexError, SignatureError) as exc:
            raise ProvisionError(f"{path}: not an Ed25519 public key in hex ({exc})") from exc
    if not keys:
        raise ProvisionError("give headquarters' signing key with --trust FILE")
    return keys


def _is_root(path: Path) -> bool:
    try:
        return path.read_bytes()[:1] == b"{"
    except OSError as exc:
        raise ProvisionError(f"{path}: {exc.strerror}") from exc


def install_root(paths: list[Path], etc: Path) -> Path:
    """Copy headquarters' root.json (from `spbu allowlist keygen`) beside the config, verified."""
    from agent.trust.root import TrustError, load_root

    if len(paths) > 1:
        raise ProvisionError("give one root.json")
    data = paths[0].read_bytes()
    try:
        load_root(data)
    except TrustError as exc:
        raise ProvisionError(f"{paths[0]}: not a valid root of trust ({exc})") from exc
    etc.mkdir(parents=True, exist_ok=True)
    target = etc / "root.json"
    target.write_bytes(data)
    return target


def write_agent_secret(path: Path, data: bytes) -> None:
    """Mode 640, group of its directory (spbu): the agent's service user reads it (the
    station key signs every transaction record), nobody else does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o640)
    # The group of its directory: install.sh makes /etc/spbu and keys/ root:spbu (or the
    # service user's group of a --root tree). Not root: a lab machine, left as it is.
    with contextlib.suppress(PermissionError):
        os.chown(path, -1, path.parent.stat().st_gid)


def readable_by_service(path: Path, etc: Path) -> None:
    """The agent runs as the service user: the config gets /etc/spbu's group (spbu, set by
    install.sh), mode 0640, whoever runs provisioning."""
    os.chmod(path, 0o640)
    group = etc.stat().st_gid
    if path.stat().st_gid != group:
        try:
            os.chown(path, -1, group)
        except PermissionError as exc:
            raise ProvisionError(f"cannot give {path} the group of {etc} ({exc.strerror}): run as root") from exc


def make_station_key_and_csr(station: str, keys_dir: Path, certs_dir: Path, force: bool) -> tuple[Path, Path]:
    key_path = keys_dir / "station.key"
    csr_path = certs_dir / "station.csr"
    if key_path.exists() and not force:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProvisionError(f"{key_path} is not an EC key; use --force to replace it")
    else:
        key = ec.generate_private_key(ec.SECP256R1())  # widest TLS support (mosquitto, brokers)
        write_agent_secret(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, station),
                                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "spbu-edge station")]))
           .sign(key, hashes.SHA256()))
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def provision(station: str, zone: str, etc: Path, data: Path, trust: list[Path], kind: str, board_port: str,
              pumps: list[str], broker_port: int = 1883, force: bool = False) -> list[Check]:
    if not STATION_ID.fullmatch(station):
        raise ProvisionError(f"station id {station!r} must look like 34.401.01")
    if zone not in ZONES:
        raise ProvisionError(f"zone must be one of {', '.join(ZONES)}")
    config_path = etc / "agent.toml"
    if config_path.exists() and not force and EXAMPLE_MARKER not in config_path.read_text(errors="replace"):
        raise ProvisionError(f"{config_path} already configures a station; use --force to reprovision")
    pump_configs = tuple(parse_pump(text, i, 100) for i, text in enumerate(pumps))
    if not pump_configs:
        raise ProvisionError("give at least one --pump NUMBER:PRODUCT:SCANNER")
    roots = [p for p in trust if _is_root(p)]
    trust_root = install_root(roots, etc) if roots else None
    keys = read_trust([p for p in trust if p not in roots]) if len(roots) < len(trust) else {}
    agent_secret = etc / "agent.password"  # `spbu keys broker-config` hashes it for the broker
    etc.mkdir(parents=True, exist_ok=True)
    if not agent_secret.exists():
        write_agent_secret(agent_secret, (secrets.token_urlsafe(24) + "\n").encode())
    config = StationConfig(
        station_id=station, zone=zone, data_dir=data, broker_host="127.0.0.1", broker_port=broker_port,
        trusted_keys=keys, relay_board_port=board_port, pumps=pump_configs,
        relay_board_kind=kind, relay_board_baud=9600 if kind == "dart" else 115200, trust_root=trust_root,
        station_key=etc / "keys" / "station.key", broker_user="spbu-agent", broker_password_file=agent_secret)
    (etc / "keys").mkdir(parents=True, exist_ok=True)
    (etc / "certs").mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_config(config))
    readable_by_service(config_path, etc)
    try:
        load_config(config_path)  # what the service will read must be valid
    except ConfigError as exc:
        raise ProvisionError(f"generated config does not validate: {exc}") from exc
    key_path, csr_path = make_station_key_and_csr(station, etc / "keys", etc / "certs", force)
    checks = [Check("config", True, f"{config_path} (station {station}, {zone}, {len(pump_configs)} pumps)"),
              Check("station key", True, f"{key_path} (EC P-256, mode 640, group spbu: it signs transactions)"),
              Check("certificate request", True, f"{csr_path}: send it to headquarters, put the signed "
                    f"certificate at {etc / 'certs' / 'station.crt'}"),
              Check("root of trust", True, f"{trust_root} (TUF-style root, roles allowlist, policy, tokens, "
                    "commands)" if trust_root else ", ".join(sorted(config.trusted_keys)))]
    devices = [("pump controller", board_port)] if kind != "gpio" else []
    devices += [(f"scanner pump {p.number}", p.scanner_port) for p in pump_configs]
    for name, path in devices:
        present = os.path.exists(path)
        checks.append(Check(name, present, f"{path} present" if present else
                            f"{path} missing: plug it in, check deploy/udev/99-spbu.rules"))
    return checks
