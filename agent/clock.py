"""Whether the wall clock can be believed, on a Pi that has no clock chip.

A Pi without RTC boots at 1970 or at the last time fake-hwclock saved, and NTP may never
come (the station is offline). Two bounds decide:

- The floor, a moment that certainly passed: the software's build date, the last journal
  entry, and times headquarters signed (a signed acknowledgement's `at`, a headquarters
  command's `issued`, a signed document's creation time). A clock behind the floor is
  untrusted. One signed message moves the floor at most MAX_FLOOR_STEP past what the
  station already believes, and nothing unsigned (or signed by the station manager) moves
  it at all: a future-dated message cannot freeze a station.
- The ceiling: headquarters' signed time from its latest acknowledgement (or national-usage
  tick) plus the monotonic time elapsed since, plus MAX_DRIFT. A clock ahead of it (someone set it
  forward to get a fresh quota day) is untrusted, and headquarters' estimate is used in
  its place. The anchor is kept with the kernel's boot id, so an agent restart within
  one boot keeps the bound; after a reboot it holds again from the first acknowledgement.

An untrusted clock never gives a fresh quota day. Durations never use the wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from agent.domain import ZONES

# The release date of this build: no real clock can be earlier.
BUILD_FLOOR = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
TOLERANCE = dt.timedelta(minutes=5)
# A signed message may move the floor this far past max(floor, wall clock), no further.
MAX_FLOOR_STEP = dt.timedelta(days=1)
# How far the wall clock may run ahead of headquarters' signed time plus elapsed time.
MAX_DRIFT = dt.timedelta(minutes=10)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def local_day(instant: dt.datetime, zone: str) -> str:
    return (instant.astimezone(dt.UTC) + dt.timedelta(hours=ZONES[zone])).date().isoformat()


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ClockReading:
    now: dt.datetime  # what the wall clock says
    trusted: bool
    effective: dt.datetime  # the clock if trusted, otherwise the best bound we have
    quota_day: str
    ahead: bool = False  # untrusted because it runs ahead of headquarters' signed time


class ClockGuard:
    def __init__(self, zone: str, build_floor: dt.datetime = BUILD_FLOOR) -> None:
        self.zone = zone
        self.floor = build_floor
        self.last_trusted_day: str | None = None
        self.anchor: tuple[dt.datetime, float] | None = None  # (headquarters' time, monotonic then)

    def observe(self, moment: dt.datetime | None, wall_now: dt.datetime | None = None) -> None:
        """Raise the floor to a moment known to have passed. `wall_now` given: the moment
        came in a message, and may move the floor only MAX_FLOOR_STEP past what we know."""
        if moment is None or moment <= self.floor:
            return
        if wall_now is not None:
            moment = min(moment, max(self.floor, wall_now) + MAX_FLOOR_STEP)
        self.floor = max(self.floor, moment)

    def estimate(self, mono: float) -> dt.datetime | None:
        """Headquarters' signed time carried forward by the monotonic clock."""
        if self.anchor is None:
            return None
        at, since = self.anchor
        return at + dt.timedelta(seconds=max(0.0, mono - since))

    def observe_hq_time(self, moment: dt.datetime, mono: float, wall_now: dt.datetime) -> bool:
        """Headquarters' signed time (an acknowledgement): raises the floor (bounded) and
        the ceiling's anchor. A stale message never lowers the anchor. True if it moved."""
        self.observe(moment, wall_now)
        moment = min(moment, self.floor)  # the same bound as the floor
        current = self.estimate(mono)
        if current is not None and moment <= current:
            return False
        self.anchor = (moment, mono)
        return True

    def anchor_json(self) -> str:
        assert self.anchor is not None
        return json.dumps({"at": self.anchor[0].isoformat(), "mono": self.anchor[1], "boot": boot_id()})

    def restore_anchor(self, text: str | None) -> None:
        """An anchor saved earlier in this boot (monotonic time is per boot)."""
        try:
            saved = json.loads(text or "")
            if saved["boot"] and saved["boot"] == boot_id():
                self.anchor = (dt.datetime.fromisoformat(saved["at"]), float(saved["mono"]))
        except (ValueError, KeyError, TypeError):
            return

    def _correct(self, estimate: dt.datetime) -> None:
        """Headquarters' time is the authority: a floor or a quota day that a clock set
        forward left in the future (before any acknowledgement bounded it) comes back."""
        if self.floor > estimate + MAX_DRIFT:
            self.floor = estimate
        real_day = local_day(estimate + MAX_DRIFT, self.zone)
        if self.last_trusted_day is not None and self.last_trusted_day > real_day:
            self.last_trusted_day = real_day

    def read(self, now: dt.datetime, mono: float | None = None) -> ClockReading:
        estimate = None if mono is None else self.estimate(mono)
        if estimate is not None:
            self._correct(estimate)
            if now > estimate + MAX_DRIFT:
                # Set forward: the day follows headquarters' time, never the local clock.
                effective = max(estimate, self.floor)
                day = local_day(effective, self.zone)
                self.last_trusted_day = max(day, self.last_trusted_day or "")
                return ClockReading(now, False, effective, self.last_trusted_day, ahead=True)
        if now >= self.floor - TOLERANCE:
            day = local_day(now, self.zone)
            if self.last_trusted_day is None or day > self.last_trusted_day:
                self.last_trusted_day = day
            # A trusted clock slightly behind the floor still cannot go back a day.
            day = max(day, self.last_trusted_day)
            return ClockReading(now, True, now, day)
        day = self.last_trusted_day or local_day(self.floor, self.zone)
        return ClockReading(now, False, self.floor, day)
