"""Transaction records as a station writes them (tx.schema.json), for load and outage runs
that fill a journal's outbox directly instead of fuelling through pumps.

Records are signed as a station signs them (agent/trust/tx_sign.py), with a simulated station
key derived from the station id, so simulated headquarters can verify them; the keys are
public (anyone can derive them) and exist only for simulations and tests."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from agent.domain import amount_idr, mask_plate
from agent.trust.signing import save_private_key
from agent.trust.tx_sign import sign_record
from hq.tx_verify import StationKeys

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def sim_station_key(station: str) -> ec.EllipticCurvePrivateKey:
    seed = int.from_bytes(hashlib.sha256(b"spbu-sim-station\n" + station.encode()).digest(), "big")
    return ec.derive_private_key(1 + seed % (_P256_ORDER - 1), ec.SECP256R1())


def sim_ack_key() -> Ed25519PrivateKey:
    """Simulated headquarters' acknowledgement key (the trust root's `acks` role)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"spbu-sim-acks").digest())


def sim_station_keys(stations: list[str] | tuple[str, ...]) -> StationKeys:
    keys = StationKeys()
    for station in stations:
        keys.add(station, sim_station_key(station).public_key())
    return keys


def write_sim_identities(directory: Path, stations: list[str] | tuple[str, ...]) -> tuple[Path, Path]:
    """Self-signed station certificates (CN = station, simulated keys) and the ack key's PEM,
    for a collector process started with --station-certs and --key. Returns (certs, key)."""
    certs = directory / "station-certs"
    certs.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    for station in stations:
        key = sim_station_key(station)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, station)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
        (certs / f"{station}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ack = directory / "acks.key"
    save_private_key(sim_ack_key(), ack)
    return certs, ack


def synthetic_tx(station: str, seq: int, vehicle_id: int, dispensed_ml: int, day: str = "2026-01-05",
                 product: str = "solar", limit_ml: int = 60_000, before_ml: int = 0,
                 price_idr: int = 6_800, plate: str = "B 1234 XYZ", signed: bool = True) -> dict[str, Any]:
    opened = dt.datetime.fromisoformat(f"{day}T03:00:00+00:00") + dt.timedelta(seconds=seq % 40_000)
    amount = amount_idr(dispensed_ml, price_idr)
    record = {
        "schema": "spbu.tx/1",
        "tx_id": f"{station}-{seq:08d}",
        "station": station,
        "pump": 1 + seq % 8,
        "vehicle_id": str(vehicle_id),
        "plate_masked": mask_plate(plate),
        "product": product,
        "dispensed_ml": dispensed_ml,
        "preset_ml": dispensed_ml,
        "unit_price_idr": price_idr,
        "amount_idr": amount,
        "payment": {"method": "cash", "mode": "postpay", "status": "unpaid", "amount_idr": amount,
                    "approval_code": None, "rrn": None, "steps": []},
        "quota": {"day": day, "limit_ml": limit_ml, "before_ml": before_ml, "after_ml": before_ml + dispensed_ml},
        "times": {"opened_at": opened.isoformat(), "closed_at": (opened + dt.timedelta(seconds=95)).isoformat(),
                  "duration_s": 95.0, "clock_trusted": True},
        "end_reason": "nozzle_hung",
        "final_state": "completed",
        "allowlist_version": 1,
        "policy_version": 1,
    }
    return sign_record(record, sim_station_key(station)) if signed else record
