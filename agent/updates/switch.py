"""Which release runs: the `current` link, trials, rollback and parking. Standard library only.

systemd runs `boot` before every start of the agent, as root (ExecStartPre=+..., see
deploy/systemd/spbu-agent.service), from a copy outside any release
(/opt/spbu/release_switch.py): a release that cannot even start still gets rolled back.
The agent itself never swaps the link; it writes a *request* into the state file and exits:

    request {"switch": V, ...migrations}  -> boot: migrate, swap `current` to V, trial starts
    trial, candidate healthy              -> agent: commit (V is the release in force)
    request {"rollback": reason}          -> boot: swap back, undo migrations, count a failure
    trial, candidate started before and never committed (exited, hung, killed by the
    watchdog)                              -> boot: the same rollback, reason said so

Two failed trials of a version park it: it is never switched to again. Every step is
journaled in state.json (atomic rename) before it is done, and each is idempotent, so a
power cut anywhere leaves `current` on one complete release and boot finishes the step.

Migrations: `config` operations (set/rename/delete of dotted keys) are applied to a copy
of agent.toml after a backup; `journal` statements run in one SQLite transaction with a
row in `release_migrations` (so they run once); rollback restores the backup and runs the
`down` statements. A journal migration without `down` cannot be undone: rollback past it
is refused and the station stays on the new release, saying so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
import tomllib
from pathlib import Path
from typing import Any

try:
    from agent.killpoints import killpoint
except ImportError:  # the copy systemd runs has no agent package beside it
    def killpoint(name: str) -> None:
        return None

COMPLETE = "COMPLETE"
PARK_AFTER = 2
# Killpoints of the switch path, in order (the crash campaign walks them all).
SWITCH_POINTS = ("switch_requested", "switch_trial_saved", "switch_migrated", "switch_link_swapped",
                 "rollback_saved", "rollback_link_swapped", "rollback_undone")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _give_back(path: Path, owner_of: Path) -> None:
    """systemd runs `boot` as root; what it writes must stay the agent's (owner of `owner_of`)."""
    if os.geteuid() != 0 or not path.exists():
        return
    st = owner_of.stat()
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def _complete(directory: Path) -> bool:
    import hashlib

    try:
        marker = (directory / COMPLETE).read_text().strip()
        return marker == hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return False


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return ()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Switch:
    def __init__(self, root: Path, state_dir: Path, config: Path | None = None,
                 journal: Path | None = None) -> None:
        self.root = root
        self.state_dir = state_dir
        self.config = config
        self.journal = journal
        self.path = state_dir / "state.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        _give_back(state_dir, state_dir.parent)

    # --- state ------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            state = {}
        if not isinstance(state, dict):
            state = {}
        state.setdefault("failures", {})
        state.setdefault("parked", [])
        return state

    def save(self, state: dict[str, Any]) -> None:
        _atomic_write(self.path, json.dumps(state, sort_keys=True, indent=1).encode())
        _give_back(self.path, self.state_dir)

    def current(self) -> str | None:
        try:
            return os.readlink(self.root / "current")
        except OSError:
            return None

    def _link(self, version: str) -> None:
        tmp = self.root / "current.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(version, tmp)
        os.replace(tmp, self.root / "current")
        _fsync_dir(self.root)

    def parked(self, version: str) -> bool:
        return version in self.load()["parked"]

    # --- what the agent asks ----------------------------------------------------------------

    def request_switch(self, version: str, config_ops: list[dict[str, Any]] | None = None,
                       journal_up: list[str] | None = None, journal_down: list[str] | None = None) -> None:
        state = self.load()
        if self.current() == version:
            return  # already there (a trial under way, or committed)
        if version in state["parked"]:
            raise ValueError(f"release {version} is parked after {PARK_AFTER} failed attempts")
        if not _complete(self.root / version):
            raise ValueError(f"release {version} is not completely staged")
        state["request"] = {"switch": version, "config": config_ops or [], "journal_up": journal_up or [],
                            "journal_down": journal_down}
        self.save(state)
        killpoint("switch_requested")

    def request_rollback(self, reason: str) -> None:
        state = self.load()
        state["request"] = {"rollback": reason}
        self.save(state)

    def commit(self, version: str) -> None:
        """The candidate passed its health window: it is the release in force."""
        state = self.load()
        trial = state.get("trial") or {}
        if trial.get("version") != version or self.current() != version:
            raise ValueError(f"release {version} is not on trial")
        state.pop("trial", None)
        state.pop("request", None)
        state["committed"] = version
        state["last"] = {"event": "installed", "version": version, "at": _now(), "reported": False}
        self.save(state)

    def mark_reported(self) -> None:
        state = self.load()
        if "last" in state:
            state["last"]["reported"] = True
            self.save(state)

    # --- what boot does ---------------------------------------------------------------------

    def boot(self) -> str:
        """Bring the link to one complete release and carry out what was requested."""
        state = self.load()
        self._clean(state)
        state.setdefault("committed", self.current())
        trial = state.get("trial")
        request = state.get("request") or {}
        if trial and trial.get("phase") == "rolling_back":
            return self._rollback(state, trial["reason"])
        if trial and trial.get("phase") == "migrating":
            if not _complete(self.root / trial["version"]):
                return self._cancel(state)
            return self._finish_switch(state)  # cut short by a power cut: each step again
        if trial:
            if "rollback" in request:
                return self._rollback(state, str(request["rollback"]))
            trial["boots"] = int(trial.get("boots", 0)) + 1
            if trial["boots"] > 1:
                return self._rollback(state, "the release did not become healthy: it exited or hung before "
                                             "its health window closed")
            self.save(state)
            return f"trial of {trial['version']}"
        if "switch" in request:
            return self._switch(state, request)
        state.pop("request", None)
        self.save(state)
        self._prune(state)
        return f"running {self.current()}"

    def _prune(self, state: dict[str, Any]) -> None:
        """A venv per release fills an SD card: keep the one running, the newest one before
        it (a technician's fallback) and newer ones not parked (staged, waiting to switch)."""
        current = self.current()
        if current is None or state.get("trial"):
            return
        releases = sorted((p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink() and _complete(p)),
                          key=lambda p: _version_key(p.name))
        older = [p for p in releases if _version_key(p.name) < _version_key(current)]
        doomed = older[:-1] + [p for p in releases if p.name in state["parked"] and p.name != current]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)

    def _clean(self, state: dict[str, Any]) -> None:
        """Incomplete release directories are debris of an interrupted staging."""
        current = self.current()
        if current is None or not _complete(self.root / current):
            fallback = state.get("committed") or (state.get("trial") or {}).get("previous")
            if fallback and _complete(self.root / fallback):
                self._link(fallback)
        keep = {self.current(), (state.get("trial") or {}).get("previous")}
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink() and entry.name not in keep and not _complete(entry):
                shutil.rmtree(entry, ignore_errors=True)

    def _switch(self, state: dict[str, Any], request: dict[str, Any]) -> str:
        version = str(request["switch"])
        previous = self.current()
        state.pop("request", None)
        if version in state["parked"] or not _complete(self.root / version) or previous is None:
            state["last"] = {"event": "refused", "version": version, "at": _now(), "reported": False,
                             "reason": "parked" if version in state["parked"] else "not a complete release"}
            self.save(state)
            return f"switch to {version} refused"
        state["trial"] = {"version": version, "previous": previous, "boots": 0, "phase": "migrating",
                          "config": request.get("config") or [], "journal_up": request.get("journal_up") or [],
                          "journal_down": request.get("journal_down"), "started": _now()}
        self.save(state)
        killpoint("switch_trial_saved")
        return self._finish_switch(state)

    def _finish_switch(self, state: dict[str, Any]) -> str:
        """Migrate, swap: both idempotent, so a boot after a power cut simply does them again."""
        trial = state["trial"]
        self._migrate(trial)
        killpoint("switch_migrated")
        self._link(trial["version"])
        killpoint("switch_link_swapped")
        trial["phase"], trial["boots"] = "running", 1
        self.save(state)
        return f"trial of {trial['version']}"

    def _cancel(self, state: dict[str, Any]) -> str:
        """A switch cut short before the link moved: undo its migrations, try again later."""
        trial = state.pop("trial")
        self._undo(trial)
        self.save(state)
        return f"switch to {trial['version']} interrupted; staying on {self.current()}"

    def _rollback(self, state: dict[str, Any], reason: str) -> str:
        trial = state["trial"]
        version = trial["version"]
        if self._has_migration(version) and trial.get("journal_down") is None:
            state.pop("request", None)
            state.pop("trial")
            state["committed"] = version
            state["last"] = {"event": "rollback_refused", "version": version, "at": _now(), "reported": False,
                             "reason": f"{reason}; the journal migration of {version} cannot be undone, so "
                                       f"the station stays on {version}"}
            self.save(state)
            return f"rollback of {version} refused"
        trial["phase"], trial["reason"] = "rolling_back", reason
        self.save(state)
        killpoint("rollback_saved")
        self._link(trial["previous"])
        killpoint("rollback_link_swapped")
        self._undo(trial)
        killpoint("rollback_undone")
        state.pop("trial")
        state.pop("request", None)
        failures = int(state["failures"].get(version, 0)) + 1
        state["failures"][version] = failures
        if failures >= PARK_AFTER and version not in state["parked"]:
            state["parked"].append(version)
        state["last"] = {"event": "rolled_back", "version": version, "back_to": trial["previous"],
                         "reason": reason, "attempt": failures, "parked": version in state["parked"],
                         "at": _now(), "reported": False}
        self.save(state)
        return f"rolled back from {version} to {trial['previous']}: {reason}"

    # --- migrations -------------------------------------------------------------------------

    def _backup(self, version: str) -> Path:
        return self.state_dir / f"agent.toml.before-{version}"

    def _migrate(self, trial: dict[str, Any]) -> None:
        version = trial["version"]
        if self.config is not None and trial["config"]:
            backup = self._backup(version)
            if not backup.exists():
                _atomic_write(backup, self.config.read_bytes())
            data = tomllib.loads(backup.read_text())
            for op in trial["config"]:
                apply_config_op(data, op)
            _atomic_write(self.config, dump_toml(data).encode())
        if self.journal is not None and trial["journal_up"] and self.journal.exists():
            with _journal(self.journal) as db:
                db.execute("CREATE TABLE IF NOT EXISTS release_migrations (version TEXT PRIMARY KEY, at TEXT)")
                if db.execute("SELECT 1 FROM release_migrations WHERE version = ?", (version,)).fetchone():
                    return  # run once
                db.execute("BEGIN IMMEDIATE")
                for statement in trial["journal_up"]:
                    db.execute(statement)
                db.execute("INSERT INTO release_migrations VALUES (?, ?)", (version, _now()))
                db.execute("COMMIT")

    def _has_migration(self, version: str) -> bool:
        if self.journal is None or not self.journal.exists():
            return False
        with _journal(self.journal) as db:
            table = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'release_migrations'").fetchone()
            return bool(table and db.execute("SELECT 1 FROM release_migrations WHERE version = ?",
                                             (version,)).fetchone())

    def _undo(self, trial: dict[str, Any]) -> None:
        version = trial["version"]
        backup = self._backup(version)
        if self.config is not None and backup.exists():
            _atomic_write(self.config, backup.read_bytes())
            backup.unlink()
        if self._has_migration(version) and self.journal is not None:
            with _journal(self.journal) as db:
                db.execute("BEGIN IMMEDIATE")
                for statement in trial.get("journal_down") or []:
                    db.execute(statement)
                db.execute("DELETE FROM release_migrations WHERE version = ?", (version,))
                db.execute("COMMIT")


class _journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        self.db.execute("PRAGMA synchronous=FULL")

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()
        for suffix in ("-wal", "-shm", "-journal"):  # sidecars root may have created
            _give_back(self.path.with_name(self.path.name + suffix), self.path)


def apply_config_op(data: dict[str, Any], op: dict[str, Any]) -> None:
    """set / rename / delete of a dotted key ("relay_board.baud") in parsed TOML."""
    *tables, name = str(op["key"]).split(".")
    table = data
    for part in tables:
        table = table.setdefault(part, {})
    if op["op"] == "set":
        table[name] = op["value"]
    elif op["op"] == "delete":
        table.pop(name, None)
    elif op["op"] == "rename" and name in table:
        value = table.pop(name)
        apply_config_op(data, {"op": "set", "key": op["to"], "value": value})


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for agent.toml: scalars, arrays, tables, arrays of tables."""
    lines: list[str] = []
    nested: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict) or (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
            nested.append((key, value))
        else:
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for key, value in nested:
        name = f"{prefix}{json.dumps(key)}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", dump_toml(value, name + ".").rstrip("\n")]
        else:
            for item in value:
                lines += ["", f"[[{name}]]", dump_toml(item, name + ".").rstrip("\n")]
    return "\n".join(line for line in lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release_switch", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("boot", "status"))
    parser.add_argument("--releases", type=Path, default=Path("/opt/spbu/releases"))
    parser.add_argument("--state", type=Path, default=Path("/var/lib/spbu/update"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--journal", type=Path, default=None)
    args = parser.parse_args(argv)
    switch = Switch(args.releases, args.state, args.config, args.journal)
    if not args.releases.is_dir():
        print(f"release_switch: no releases under {args.releases}: nothing to do")
        return 0
    if args.action == "status":
        print(json.dumps({"current": switch.current(), **switch.load()}, indent=1))
        return 0
    print(f"release_switch: {switch.boot()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
