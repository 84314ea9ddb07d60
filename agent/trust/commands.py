"""Signed commands from headquarters or the station manager, on `hq/v1/cmd/<station>`.

A command is a signed envelope (agent/trust/signing.py, kind "command") whose body names the
station, the command, a random nonce, when it was issued and when it expires:

    {"command": "lock_pump", "station": "34.401.01", "nonce": "<32 hex>",
     "issued": "2026-11-20T08:00:00+00:00", "expires": "2026-11-20T08:05:00+00:00",
     "args": {"pump": 2}}

It is refused, changing nothing, when it is unsigned, signed by a key outside the
`commands` keyring, for another station, expired (by the clock guard's effective time, so
an untrusted clock cannot revive it), lives longer than MAX_LIFETIME, or reuses a nonce.
Nonces are kept in SQLite until well after their command expired, so a replay is refused
after a restart too. Pump locks are kept there as well: a locked pump stays locked across
restarts until unlocked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.trust.root import TrustError
from agent.trust.signing import SignatureError, load_public_key_hex, sign_document, verify_document

COMMAND_KIND = "command"
LOCK_PUMP = "lock_pump"
UNLOCK_PUMP = "unlock_pump"
REQUEST_STATE = "request_state"
RELOAD_CONFIG = "reload_config"
ROTATE_LOGS = "rotate_logs"
ACK_ALERT = "ack_alert"  # the manager's dashboard: an alert was seen
COMMANDS = (LOCK_PUMP, UNLOCK_PUMP, REQUEST_STATE, RELOAD_CONFIG, ROTATE_LOGS, ACK_ALERT)
PUMP_COMMANDS = (LOCK_PUMP, UNLOCK_PUMP)
MAX_LIFETIME = dt.timedelta(hours=24)
# How far a command's `issued` may lie ahead of the latest time the station believes in
# (clocks of headquarters and the manager's tablet differ a little, never by years).
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
NONCE_KEEP_S = 2 * 86400.0  # past the command's expiry: beyond any clock the guard would accept
NONCE = re.compile(r"[0-9a-f]{16,64}")

# Reasons a command is refused (events of type "command_rejected").
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
MALFORMED = "malformed"
WRONG_STATION = "wrong_station"
EXPIRED = "expired"
ISSUED_IN_FUTURE = "issued_in_future"
TOO_LONG = "lifetime_too_long"
REPLAYED = "replayed"
NOT_PERMITTED = "not_permitted"
ROOT_EXPIRED = "root_expired"  # headquarters' commands role, under a root past its expiry

# What the station manager's dashboard key may sign; the rest is headquarters' alone.
MANAGER_COMMANDS = (LOCK_PUMP, UNLOCK_PUMP, ACK_ALERT, REQUEST_STATE)


class CommandRejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Command:
    name: str
    station: str
    nonce: str
    issued: dt.datetime
    expires: dt.datetime
    args: dict[str, Any]
    key_id: str
    by_manager: bool = False  # signed by a manager's key, not headquarters'

    @property
    def pump(self) -> int | None:
        value = self.args.get("pump")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def keyring_from_config(trusted_keys: dict[str, str]) -> dict[str, Ed25519PublicKey]:
    """The `commands` keyring, filled from [trust.keys] until the trust root assigns roles."""
    return {kid: load_public_key_hex(hexkey) for kid, hexkey in trusted_keys.items()}


def sign_command(key: Ed25519PrivateKey, station: str, name: str, args: dict[str, Any] | None = None,
                 lifetime: dt.timedelta = dt.timedelta(minutes=5), issued: dt.datetime | None = None,
                 nonce: str | None = None) -> bytes:
    """What headquarters or the manager's console sends (tests and simulators use it too)."""
    issued = issued or dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = {"command": name, "station": station, "nonce": nonce or os.urandom(16).hex(),
            "issued": issued.isoformat(), "expires": (issued + lifetime).isoformat(), "args": args or {}}
    return sign_document(COMMAND_KIND, body, key)


def _time(body: dict[str, Any], name: str) -> dt.datetime:
    value = body.get(name)
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise CommandRejected(MALFORMED, f"{name} is not an ISO time") from exc
    if moment.tzinfo is None:
        raise CommandRejected(MALFORMED, f"{name} has no time zone")
    return moment


def parse_command(data: bytes, keyring: dict[str, Ed25519PublicKey]) -> Command:
    """Signature and shape; station, expiry and nonce are checked by CommandGate."""
    try:
        envelope = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CommandRejected(MALFORMED, "not JSON") from exc
    if not isinstance(envelope, dict):
        raise CommandRejected(MALFORMED, "not an object")
    if not envelope.get("sig") or not envelope.get("key_id"):
        raise CommandRejected(UNSIGNED, "no signature")
    try:
        body = verify_document(data, COMMAND_KIND, keyring)
    except SignatureError as exc:
        text = str(exc)
        reason = UNKNOWN_KEY if "unknown signing key" in text else MALFORMED if "kind" in text else BAD_SIGNATURE
        raise CommandRejected(reason, text) from exc
    name = body.get("command")
    if name not in COMMANDS:
        raise CommandRejected(MALFORMED, f"unknown command {name!r}")
    nonce = body.get("nonce")
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise CommandRejected(MALFORMED, "nonce must be 16-64 lowercase hex digits")
    args = body.get("args", {})
    station = body.get("station")
    if not isinstance(args, dict) or not isinstance(station, str):
        raise CommandRejected(MALFORMED, "station or args missing")
    command = Command(str(name), station, nonce, _time(body, "issued"), _time(body, "expires"), args,
                      str(envelope["key_id"]))
    if command.name in PUMP_COMMANDS and command.pump is None:
        raise CommandRejected(MALFORMED, f"{command.name} needs args.pump")
    if command.name == ACK_ALERT and not isinstance(args.get("alert_id"), str):
        raise CommandRejected(MALFORMED, "ack_alert needs args.alert_id")
    return command


class CommandStore:
    """Seen nonces and pump locks, in SQLite beside the journal (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, forget_after REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS pump_locks (pump INTEGER PRIMARY KEY, nonce TEXT NOT NULL,"
            " locked_at TEXT NOT NULL);")

    def close(self) -> None:
        self._db.close()

    def claim(self, nonce: str, expires: dt.datetime) -> bool:
        """Record a nonce; False if it was seen before. Old nonces are forgotten on the way."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM nonces WHERE forget_after < ?", (time.time(),))
            inserted = self._db.execute("INSERT OR IGNORE INTO nonces (nonce, forget_after) VALUES (?, ?)",
                                        (nonce, expires.timestamp() + NONCE_KEEP_S)).rowcount
        return inserted == 1

    def locked(self) -> set[int]:
        return {int(r[0]) for r in self._db.execute("SELECT pump FROM pump_locks")}

    def set_lock(self, pump: int, locked: bool, nonce: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if locked:
                self._db.execute("INSERT OR REPLACE INTO pump_locks (pump, nonce, locked_at) VALUES (?, ?, ?)",
                                 (pump, nonce, dt.datetime.now(dt.UTC).isoformat()))
            else:
                self._db.execute("DELETE FROM pump_locks WHERE pump=?", (pump,))


class CommandGate:
    """Everything a command must pass before the station acts on it."""

    def __init__(self, station: str,
                 keyring: dict[str, Ed25519PublicKey] | Callable[[], dict[str, Ed25519PublicKey]],
                 store: CommandStore, manager_keyring: dict[str, Ed25519PublicKey] | None = None,
                 root_fresh: Callable[[], None] = lambda: None) -> None:
        self.station = station
        self.root_fresh = root_fresh  # raises TrustError when the root's roles may sign nothing new
        # A callable is asked at every command, so a rotated trust root applies at once.
        self._keyring = keyring
        self.manager_keyring = manager_keyring or {}
        self.store = store

    @property
    def keyring(self) -> dict[str, Ed25519PublicKey]:
        return self._keyring() if callable(self._keyring) else self._keyring

    def admit(self, data: bytes, effective_now: dt.datetime, latest_now: dt.datetime | None = None) -> Command:
        """latest_now: the latest time the station believes in (default effective_now);
        a command issued more than FUTURE_TOLERANCE after it is refused."""
        keyring = self.keyring
        managers = {k: v for k, v in self.manager_keyring.items() if k not in keyring}
        command = parse_command(data, {**managers, **keyring})
        if command.key_id in managers and command.name not in MANAGER_COMMANDS:
            raise CommandRejected(NOT_PERMITTED, f"a manager's key may not sign {command.name}")
        if command.station != self.station:
            raise CommandRejected(WRONG_STATION, f"for station {command.station}")
        if command.expires - command.issued > MAX_LIFETIME:
            raise CommandRejected(TOO_LONG, f"lives {command.expires - command.issued}, at most {MAX_LIFETIME}")
        if command.expires <= effective_now:
            raise CommandRejected(EXPIRED, f"expired {command.expires.isoformat()}")
        if command.issued > (latest_now or effective_now) + FUTURE_TOLERANCE:
            raise CommandRejected(ISSUED_IN_FUTURE, f"issued {command.issued.isoformat()}, after"
                                  f" {(latest_now or effective_now).isoformat()}")
        if command.key_id not in managers:  # the station's own manager keys do not hang on the root
            try:
                self.root_fresh()
            except TrustError as exc:
                raise CommandRejected(ROOT_EXPIRED, str(exc)) from exc
        # The nonce is claimed last: a refused command does not burn it.
        if not self.store.claim(command.nonce, command.expires):
            raise CommandRejected(REPLAYED, f"nonce {command.nonce} already used")
        return dataclasses.replace(command, by_manager=command.key_id in managers)
