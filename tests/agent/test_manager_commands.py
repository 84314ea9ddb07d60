"""The station manager's dashboard key: derived from the password, trusted through the
config, and allowed only the manager's commands."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.trust.commands import (
    LOCK_PUMP,
    NOT_PERMITTED,
    RELOAD_CONFIG,
    CommandGate,
    CommandRejected,
    CommandStore,
    sign_command,
)
from agent.trust.manager_keys import manager_key
from agent.trust.signing import key_id

STATION = "34.401.01"
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def gate(tmp_path: Path) -> tuple[CommandGate, Ed25519PrivateKey, Ed25519PrivateKey]:
    hq = Ed25519PrivateKey.generate()
    manager = manager_key(STATION, "dashboard", "a long enough password")
    store = CommandStore(tmp_path / "commands.sqlite")
    pub_hq, pub_mgr = hq.public_key(), manager.public_key()
    return CommandGate(STATION, {key_id(pub_hq): pub_hq}, store, {key_id(pub_mgr): pub_mgr}), hq, manager


def test_the_manager_may_lock_but_not_reload_the_config(
        gate: tuple[CommandGate, Ed25519PrivateKey, Ed25519PrivateKey]) -> None:
    command_gate, hq, manager = gate
    lock = command_gate.admit(sign_command(manager, STATION, LOCK_PUMP, {"pump": 1}, issued=NOW), NOW)
    assert lock.name == LOCK_PUMP
    with pytest.raises(CommandRejected) as refused:
        command_gate.admit(sign_command(manager, STATION, RELOAD_CONFIG, issued=NOW), NOW)
    assert refused.value.reason == NOT_PERMITTED
    assert command_gate.admit(sign_command(hq, STATION, RELOAD_CONFIG, issued=NOW), NOW).name == RELOAD_CONFIG


def test_another_password_derives_a_key_the_station_does_not_know(
        gate: tuple[CommandGate, Ed25519PrivateKey, Ed25519PrivateKey]) -> None:
    command_gate, _, _ = gate
    guessed = manager_key(STATION, "dashboard", "a long enough passworD")
    with pytest.raises(CommandRejected) as refused:
        command_gate.admit(sign_command(guessed, STATION, LOCK_PUMP, {"pump": 1}, issued=NOW), NOW)
    assert refused.value.reason == "unknown_key"


def test_keys_manager_prints_config_lines_the_config_loader_accepts(tmp_path: Path) -> None:
    secret = tmp_path / "dashboard.password"
    secret.write_text("a long enough password\n")
    out = subprocess.run([sys.executable, "-m", "agent", "keys", "manager", "--station", STATION,
                          "--password-file", str(secret)], capture_output=True, text=True, check=True).stdout
    keys = tomllib.loads(out)["dashboard"]["manager_keys"]
    public = manager_key(STATION, "dashboard", "a long enough password").public_key()
    assert list(keys) == [key_id(public)]
    short = tmp_path / "short"
    short.write_text("too short\n")
    bad = subprocess.run([sys.executable, "-m", "agent", "keys", "manager", "--station", STATION,
                          "--password-file", str(short)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("spbu: error:") and "Traceback" not in bad.stderr


def test_a_rotated_commands_role_applies_to_the_next_command(tmp_path: Path) -> None:
    """The station hands the gate its trust root's keyring as a callable: after a root
    rotation the new key is honoured and the retired one refused, without a restart."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ring = {key_id(old.public_key()): old.public_key()}
    command_gate = CommandGate(STATION, lambda: ring, CommandStore(tmp_path / "commands.sqlite"))
    assert command_gate.admit(sign_command(old, STATION, LOCK_PUMP, {"pump": 1}, issued=NOW), NOW)
    ring.clear()
    ring[key_id(new.public_key())] = new.public_key()  # the root rotated the commands role
    assert command_gate.admit(sign_command(new, STATION, LOCK_PUMP, {"pump": 1}, issued=NOW), NOW)
    with pytest.raises(CommandRejected) as refused:
        command_gate.admit(sign_command(old, STATION, LOCK_PUMP, {"pump": 1}, issued=NOW), NOW)
    assert refused.value.reason == "unknown_key"
