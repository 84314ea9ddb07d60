"""The release switch (agent/updates/switch.py) as systemd drives it: trial, commit,
rollback by request or because the candidate never became healthy, parking after two
failures, config and journal migrations undone, or the rollback refused when they cannot be."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.updates.switch import Switch, dump_toml, main


def fake_release(root: Path, version: str) -> None:
    release = root / version
    release.mkdir(parents=True)
    raw = json.dumps({"signed": {"version": version}}).encode()
    (release / "manifest.json").write_bytes(raw)
    (release / "COMPLETE").write_text(hashlib.sha256(raw).hexdigest())


@pytest.fixture
def switch(tmp_path: Path) -> Switch:
    root = tmp_path / "releases"
    for version in ("0.1.0", "0.2.0", "0.3.0"):
        fake_release(root, version)
    (root / "current").symlink_to("0.1.0")
    config = tmp_path / "agent.toml"
    config.write_text('[station]\nid = "34.401.01"\n\n[relay_board]\nbaud = 115200\n\n[[pumps]]\nnumber = 1\n')
    sqlite3.connect(tmp_path / "journal.sqlite").close()
    return Switch(root, tmp_path / "update", config, tmp_path / "journal.sqlite")


def test_switch_trial_commit(switch: Switch) -> None:
    switch.request_switch("0.2.0")
    assert switch.current() == "0.1.0", "the agent only asks; boot swaps"
    assert switch.boot() == "trial of 0.2.0"
    assert switch.current() == "0.2.0"
    switch.commit("0.2.0")
    assert switch.boot() == "running 0.2.0"
    assert switch.load()["last"]["event"] == "installed"


def test_a_candidate_that_starts_twice_without_committing_is_rolled_back(switch: Switch) -> None:
    switch.request_switch("0.2.0")
    switch.boot()  # the candidate starts ... and exits before its health window closes
    message = switch.boot()
    assert message.startswith("rolled back from 0.2.0 to 0.1.0")
    assert switch.current() == "0.1.0"
    last = switch.load()["last"]
    assert (last["event"], last["attempt"], last["parked"]) == ("rolled_back", 1, False)


def test_two_failures_park_the_version(switch: Switch) -> None:
    for attempt in (1, 2):
        switch.request_switch("0.2.0")
        switch.boot()
        switch.request_rollback("broker link never came up")
        switch.boot()
        assert switch.load()["last"]["attempt"] == attempt
    assert switch.parked("0.2.0")
    with pytest.raises(ValueError, match="parked"):
        switch.request_switch("0.2.0")
    switch.request_switch("0.3.0")  # a newer release is still welcome
    assert switch.boot() == "trial of 0.3.0"


def test_config_and_journal_migrations_run_once_and_are_undone(switch: Switch) -> None:
    assert switch.config is not None and switch.journal is not None
    before = switch.config.read_bytes()
    ops: list[dict[str, Any]] = [{"op": "rename", "key": "relay_board.baud", "to": "relay_board.speed"},
           {"op": "set", "key": "update.health_window_s", "value": 30}]
    switch.request_switch("0.2.0", ops, ["CREATE TABLE extra (x)"], ["DROP TABLE extra"])
    switch.boot()
    migrated = tomllib.loads(switch.config.read_text())
    assert migrated["relay_board"] == {"speed": 115200} and migrated["update"]["health_window_s"] == 30
    assert migrated["pumps"] == [{"number": 1}]
    with sqlite3.connect(switch.journal) as db:
        assert db.execute("SELECT count(*) FROM release_migrations").fetchone() == (1,)
    switch.request_rollback("unhealthy")
    switch.boot()
    assert switch.config.read_bytes() == before
    with sqlite3.connect(switch.journal) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'extra'").fetchone() is None


def test_a_journal_migration_without_down_refuses_the_rollback_plainly(switch: Switch) -> None:
    switch.request_switch("0.2.0", [], ["CREATE TABLE extra (x)"], None)
    switch.boot()
    switch.request_rollback("unhealthy")
    assert switch.boot() == "rollback of 0.2.0 refused"
    assert switch.current() == "0.2.0"
    assert "cannot be undone" in switch.load()["last"]["reason"]


def test_incomplete_releases_are_never_switched_to_and_are_cleaned(switch: Switch) -> None:
    (switch.root / "0.3.0" / "COMPLETE").write_text("torn")
    with pytest.raises(ValueError, match="not completely staged"):
        switch.request_switch("0.3.0")
    switch.boot()
    assert not (switch.root / "0.3.0").exists()


def test_a_dangling_current_link_falls_back_to_the_committed_release(switch: Switch) -> None:
    switch.boot()
    (switch.root / "current").unlink()
    (switch.root / "current").symlink_to("0.9.9")
    switch.boot()
    assert switch.current() == "0.1.0"


def test_dump_toml_round_trips() -> None:
    data = {"station": {"id": "34.401.01", "lang": "id"}, "mqtt": {"port": 1883},
            "trust": {"keys": {"ab": "cd"}}, "pumps": [{"number": 1, "scanner": "/dev/x"}, {"number": 2}],
            "flag": True, "list": [1, 2]}
    assert tomllib.loads(dump_toml(data)) == data


def test_command_line_boot_and_status(switch: Switch, capsys: pytest.CaptureFixture[str]) -> None:
    switch.request_switch("0.2.0")
    assert main(["boot", "--releases", str(switch.root), "--state", str(switch.state_dir)]) == 0
    assert "trial of 0.2.0" in capsys.readouterr().out
    assert main(["status", "--releases", str(switch.root), "--state", str(switch.state_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == "0.2.0"


def test_old_and_parked_releases_are_pruned(switch: Switch) -> None:
    fake_release(switch.root, "0.0.9")
    fake_release(switch.root, "0.0.8")
    for _ in range(2):
        switch.request_switch("0.3.0")
        switch.boot()
        switch.request_rollback("unhealthy")
        switch.boot()
    switch.request_switch("0.2.0")
    switch.boot()
    switch.commit("0.2.0")
    switch.boot()
    left = sorted(p.name for p in switch.root.iterdir() if not p.is_symlink())
    assert left == ["0.1.0", "0.2.0"], "the running one and the one before it; parked 0.3.0 gone"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, as systemd runs the switch")
def test_what_boot_writes_as_root_stays_the_agents(tmp_path: Path) -> None:
    data = tmp_path / "var-lib-spbu"
    data.mkdir()
    os.chown(data, 65534, 65534)  # the service user's data directory
    root = tmp_path / "releases"
    fake_release(root, "0.1.0")
    fake_release(root, "0.2.0")
    (root / "current").symlink_to("0.1.0")
    journal = data / "journal.sqlite"
    sqlite3.connect(journal).close()
    os.chown(journal, 65534, 65534)
    switch = Switch(root, data / "update", None, journal)
    switch.request_switch("0.2.0", [], ["CREATE TABLE extra (x)"], ["DROP TABLE extra"])
    switch.boot()
    for path in (data / "update", data / "update" / "state.json", journal):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path
    assert not any(p.stat().st_uid == 0 for p in data.glob("journal.sqlite*"))
