"""Presence and heartbeat payloads.

The retained state topic says online/offline (birth on connect, `offline` as last will);
the heartbeat, every `Station.heartbeat_s` seconds while connected, says how the station is
doing: outbox depth and drain rate, signed documents in force and their age, clock trust,
pump states and locks, software version (heartbeat.schema.json)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Protocol

from agent import __version__
from agent.clock import ClockGuard
from agent.config import StationConfig
from agent.disk_guard import DiskGuard
from agent.docstore import DocumentStore
from agent.journal import Journal
from agent.mqtt_link import MqttLink
from agent.outbox import OutboxSender
from agent.pump_states import PumpRuntime
from agent.updates.updater import UpdateAgent


class StationView(Protocol):
    """What the heartbeat reads of the station (agent/station.py's public attributes)."""

    config: StationConfig
    pumps: dict[int, PumpRuntime]
    locked: set[int]
    docs: DocumentStore
    clock: ClockGuard
    journal: Journal
    outbox: OutboxSender
    link: MqttLink
    disk: DiskGuard
    updates: UpdateAgent | None


LOCKED = "locked"


def pump_states(station: StationView) -> dict[str, str]:
    """Pump states as shown to headquarters and the dashboard: a locked pump shows `locked`."""
    return {str(n): LOCKED if n in station.locked
            else "out_of_service" if p.out_of_service and p.session is None else p.state
            for n, p in station.pumps.items()}


def heartbeat(station: StationView, now: dt.datetime, mono: float | None = None) -> dict[str, Any]:
    """now, mono: the wall and monotonic times of this report (default: the monotonic clock's)."""
    mono = time.monotonic() if mono is None else mono
    allowlist = station.docs.allowlist
    policy = station.docs.policy
    reading = station.clock.peek(now, mono)  # a report: it changes no state of the clock
    return {
        "station": station.config.station_id,
        "at": now.isoformat(),
        "version": __version__,
        "outbox": {"depth": station.journal.outbox_depth(), "in_flight": station.outbox.in_flight,
                   "drain_per_s": round(station.outbox.drain_rate(mono), 3), "resend_rounds": station.outbox.resends},
        "allowlist": {"version": allowlist.version if allowlist else 0,
                      "age_s": round((now - allowlist.created).total_seconds()) if allowlist else None,
                      "expires": allowlist.expires.isoformat() if allowlist else None},
        "policy_version": policy.version if policy else 0,
        "clock": {"trusted": reading.trusted, "floor": station.clock.floor.isoformat(),
                  "quota_day": reading.quota_day},
        "pumps": pump_states(station),
        "locked_pumps": sorted(station.locked),
        "hq_link": station.link.connected,
        # fleet updates (agent/updates/updater.py): idle, fetching, staged, trial, rolling_back ...
        **({"update": station.updates.summary()} if station.updates is not None else {}),
        "disk": station.disk.state.as_dict(),
    }
