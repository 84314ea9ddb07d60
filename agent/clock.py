"""Whether the wall clock can be believed, on a Pi that has no clock chip.

A Pi without RTC boots at 1970 or at the last time fake-hwclock saved, and NTP may never
come (the station is offline). The wall clock is trusted only if it is not earlier than
the newest of: the software's build date, the last journal entry, headquarters' time in its
latest acknowledgement, and the newest signed
document's creation time (each a moment that certainly passed). An untrusted clock never
resets quotas: the quota day stays at the last trusted day, and expiry checks use that
floor instead of the clock. Durations never use the wall clock (monotonic only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.domain import ZONES

# The release date of this build: no real clock can be earlier.
BUILD_FLOOR = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
TOLERANCE = dt.timedelta(minutes=5)


def local_day(instant: dt.datetime, zone: str) -> str:
    return (instant.astimezone(dt.UTC) + dt.timedelta(hours=ZONES[zone])).date().isoformat()


@dataclass(frozen=True)
class ClockReading:
    now: dt.datetime  # what the wall clock says
    trusted: bool
    effective: dt.datetime  # the clock if trusted, otherwise the floor (a time surely past)
    quota_day: str


class ClockGuard:
    def __init__(self, zone: str, build_floor: dt.datetime = BUILD_FLOOR) -> None:
        self.zone = zone
        self.floor = build_floor
        self.last_trusted_day: str | None = None

    def observe(self, moment: dt.datetime | None) -> None:
        """Raise the floor to a moment known to have passed (journal entry, signed document)."""
        if moment is not None and moment > self.floor:
            self.floor = moment

    def read(self, now: dt.datetime) -> ClockReading:
        trusted = now >= self.floor - TOLERANCE
        if trusted:
            day = local_day(now, self.zone)
            if self.last_trusted_day is None or day > self.last_trusted_day:
                self.last_trusted_day = day
            # A trusted clock slightly behind the floor still cannot go back a day.
            day = max(day, self.last_trusted_day)
            return ClockReading(now, True, now, day)
        day = self.last_trusted_day or local_day(self.floor, self.zone)
        return ClockReading(now, False, self.floor, day)
