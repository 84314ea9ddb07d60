"""`[attendant]` in agent.toml: who may sign in (attendant number, name, PIN hash) and which
pumps each enrolled device serves; `[scanners] good_read_hex / bad_read_hex` for scanners
that beep on command.

    [attendant.people.07]
    name = "Budi"
    pin = "scrypt$..."              # spbu attendant pin --number 07
    [attendant.devices]
    pulau-1 = [1, 2]                # spbu attendant device --name pulau-1 --pumps 1,2
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

DEVICE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
ATTENDANT_NUMBER = re.compile(r"[0-9]{1,8}")
PIN = re.compile(r"[0-9]{4,8}")
# scrypt at N=2^13 costs ~10-20 ms: a sign-in stays short on the agent's loop, and guessing
# is bounded by the agent's rate limit, not by the hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**13, 8, 1


class AttendantConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Person:
    number: str
    name: str
    pin_hash: str


@dataclass(frozen=True)
class AttendantConfig:
    people: dict[str, Person] = field(default_factory=dict)
    devices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    max_failures: int = 3  # wrong PINs in a row before a device or a number must wait
    lockout_s: float = 30.0  # the first wait; it doubles with each further failure, up to 15 min


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    if not PIN.fullmatch(pin):
        raise AttendantConfigError("a PIN is 4 to 8 digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, pin_hash: str) -> bool:
    try:
        kind, salt_hex, digest_hex = pin_hash.split("$")
        salt, want = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if kind != "scrypt" or not PIN.fullmatch(pin):
        return False
    got = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=len(want))
    return hmac.compare_digest(got, want)


def _people(raw: Any) -> dict[str, Person]:
    if not isinstance(raw, dict):
        raise AttendantConfigError("[attendant.people]: must be a table")
    people = {}
    for number, row in raw.items():
        if not ATTENDANT_NUMBER.fullmatch(str(number)):
            raise AttendantConfigError(f"[attendant.people]: {number!r} is not an attendant number (1-8 digits)")
        if not isinstance(row, dict) or not isinstance(row.get("pin"), str) or not row["pin"].startswith("scrypt$"):
            raise AttendantConfigError(f"[attendant.people.{number}]: needs pin = \"scrypt$...\" "
                                       "(spbu attendant pin)")
        people[str(number)] = Person(str(number), str(row.get("name", number)), row["pin"])
    return people


def _devices(raw: Any, pumps: set[int]) -> dict[str, tuple[int, ...]]:
    if not isinstance(raw, dict):
        raise AttendantConfigError("[attendant.devices]: must be a table")
    devices = {}
    for name, served in raw.items():
        if not DEVICE_NAME.fullmatch(str(name)):
            raise AttendantConfigError(f"[attendant.devices]: {name!r}: lowercase letters, digits and -")
        if (not isinstance(served, list) or not served or len(served) > 4
                or not all(isinstance(p, int) and p in pumps for p in served)):
            raise AttendantConfigError(f"[attendant.devices]: {name} = a list of 1-4 of this station's pumps")
        devices[str(name)] = tuple(sorted(set(served)))
    return devices


def parse_attendant(raw: Any, pumps: set[int]) -> AttendantConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise AttendantConfigError("[attendant]: must be a table")
    unknown = set(raw) - {"people", "devices", "max_failures", "lockout_s"}
    if unknown:
        raise AttendantConfigError(f"[attendant]: unknown setting {sorted(unknown)[0]!r}")
    cfg = AttendantConfig(_people(raw.get("people", {})), _devices(raw.get("devices", {}), pumps),
                          int(raw.get("max_failures", 3)), float(raw.get("lockout_s", 30.0)))
    if not 1 <= cfg.max_failures <= 10 or not 1 <= cfg.lockout_s <= 3600:
        raise AttendantConfigError("[attendant]: max_failures 1..10, lockout_s 1..3600")
    return cfg


def parse_beep(raw: Any) -> tuple[bytes, bytes]:
    """The scanners' good-read and bad-read commands ([scanners] good_read_hex, bad_read_hex)."""
    if not isinstance(raw, dict):
        return b"", b""
    out = []
    for name in ("good_read_hex", "bad_read_hex"):
        text = raw.get(name, "")
        try:
            value = bytes.fromhex(str(text))
        except ValueError as exc:
            raise AttendantConfigError(f"[scanners]: {name} must be hex bytes, e.g. \"1b 42 0d\"") from exc
        if len(value) > 64:
            raise AttendantConfigError(f"[scanners]: {name} is at most 64 bytes")
        out.append(value)
    return out[0], out[1]
