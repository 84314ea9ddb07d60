"""Presence and heartbeat payloads.

The retained state topic says online/offline (birth on connect, `offline` as last will);
the heartbeat, every `Station.heartbeat_s` seconds while connected, says how the station is
doing: outbox depth and drain rate, signed documents in force and their age, clock trust,
pump states and locks, software version (heartbeat.schema.json)."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from agent import __version__

if TYPE_CHECKING:
    from agent.station import Station

LOCKED = "locked"


def pump_states(station: Station) -> dict[str, str]:
    """Pump states as shown to headquarters and the dashboard: a locked pump shows `locked`."""
    return {str(n): LOCKED if n in station.locked
            else "out_of_service" if p.out_of_service and p.session is None else p.state
            for n, p in station.pumps.items()}


def heartbeat(station: Station, now: dt.datetime) -> dict[str, Any]:
    mono = time.monotonic()
    allowlist = station.docs.allowlist
    policy = station.docs.policy
    reading = station.clock.read(now)
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
        "disk": station.disk.state.as_dict(),
    }
