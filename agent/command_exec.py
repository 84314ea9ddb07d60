"""What the station does for an admitted command (agent/trust/commands.py checked it first).

Runs on the station's event loop, like every other decision; the result is published on
`spbu/v1/<station>/cmd_result` and as an event."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Protocol

from agent.config import ConfigError, StationConfig, load_config
from agent.docstore import DocumentStore, UpdateResult
from agent.live_view import LiveView
from agent.pump_states import PumpRuntime
from agent.trust.commands import (
    ACK_ALERT,
    LOCK_PUMP,
    RELOAD_CONFIG,
    REQUEST_STATE,
    ROTATE_LOGS,
    UNLOCK_PUMP,
    Command,
    CommandStore,
)


class CommandTarget(Protocol):
    """The part of the station a command may act on (agent/station.py's public API)."""

    config: StationConfig
    config_path: Path | None
    pumps: dict[int, PumpRuntime]
    locked: set[int]
    command_store: CommandStore
    live: LiveView
    docs: DocumentStore

    def show_pump(self, pump: PumpRuntime) -> None: ...
    def publish_presence(self) -> None: ...
    def report_update(self, result: UpdateResult) -> None: ...

log = logging.getLogger(__name__)


def execute(station: CommandTarget, command: Command) -> tuple[bool, str]:
    """(done, detail). A command that cannot be carried out changes nothing."""
    if command.name in (LOCK_PUMP, UNLOCK_PUMP):
        pump = command.pump
        if pump is None or pump not in station.pumps:
            return False, f"no pump {pump}"
        lock = command.name == LOCK_PUMP
        station.command_store.set_lock(pump, lock, command.nonce)
        if lock:
            station.locked.add(pump)
        else:
            station.locked.discard(pump)
        station.show_pump(station.pumps[pump])
        running = station.pumps[pump].session is not None
        return True, f"pump {pump} {'locked' if lock else 'unlocked'}" + (
            "; the fill in progress finishes normally" if lock and running else "")
    if command.name == REQUEST_STATE:
        station.publish_presence()
        return True, "state and heartbeat published"
    if command.name == ACK_ALERT:
        alert_id = str(command.args["alert_id"])
        if station.live.acknowledge(alert_id):
            return True, f"alert {alert_id} acknowledged"
        return False, f"no active alert {alert_id}"
    if command.name == RELOAD_CONFIG:
        return _reload(station)
    if command.name == ROTATE_LOGS:
        rolled = 0
        for handler in logging.getLogger().handlers:
            rollover = getattr(handler, "doRollover", None)
            if callable(rollover):
                rollover()
                rolled += 1
        return True, f"{rolled} log file(s) rolled over" if rolled else "logging goes to journald: nothing to roll"
    return False, f"unknown command {command.name}"


def _reload(station: CommandTarget) -> tuple[bool, str]:
    """Settings safe to change live (timeouts, language); the rest needs a restart."""
    for result in station.docs.load_saved():
        station.report_update(result)
    path = station.config_path
    if path is None:
        return True, "signed documents reloaded; no config file to re-read"
    try:
        fresh = load_config(path)
    except ConfigError as exc:
        return False, f"config not reloaded: {exc}"
    if fresh.station_id != station.config.station_id:
        return False, "config names another station; not reloaded"
    restart = [name for name in ("pumps", "broker_host", "broker_port", "relay_board_port", "relay_board_kind",
                                 "trusted_keys", "zone") if getattr(fresh, name) != getattr(station.config, name)]
    station.config = dataclasses.replace(station.config, timeouts=fresh.timeouts, lang=fresh.lang)
    return True, "timeouts and language reloaded" + (f"; restart needed for {', '.join(restart)}" if restart else "")
