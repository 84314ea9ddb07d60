"""The agent under systemd: READY once started, WATCHDOG only while the main loop runs and
every device task is going round its loop, STATUS with what a technician wants to see."""

from __future__ import annotations

import logging
import threading
import time

from agent.sdnotify import Notifier
from agent.station import Station

log = logging.getLogger(__name__)


def serve(station: Station, notifier: Notifier, stop: threading.Event) -> None:
    station.start()
    notifier.ready(station.status_line())
    interval = notifier.watchdog_interval_s or 5.0  # STATUS refresh even without a watchdog
    next_beat = 0.0
    unhealthy_since: float | None = None
    try:
        while not stop.is_set() and station.exit_code is None:
            station.step()  # sleeps until its next event or timer
            now = time.monotonic()
            if now < next_beat:
                continue
            next_beat = now + interval
            healthy, why = station.health()
            if healthy:
                unhealthy_since = None
                if notifier.watchdog_interval_s:
                    notifier.watchdog(station.status_line())
                else:
                    notifier.status(station.status_line())
            else:
                # No WATCHDOG: systemd restarts us after WatchdogSec, which a stuck device
                # task needs (the relay board has already dropped its relays by then).
                if unhealthy_since is None:
                    unhealthy_since = now
                    log.error("unhealthy: %s", why)
                notifier.status(f"UNHEALTHY {why}; {station.status_line()}")
    finally:
        notifier.stopping()
        station.close()
        notifier.close()
