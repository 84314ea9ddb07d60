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

After a reboot without headquarters' time the ceiling is gone (monotonic time restarts),
so a clock set forward before the boot would be believed. A third bound closes that gap:

- The certain time, a lower bound on real time that no local clock moves: the latest
  moment headquarters signed (a document's creation, a command, an acknowledgement, a
  usage tick; bounded like the floor) plus the monotonic time since then; it
  is saved in the journal, and after a reboot it goes on from the saved moment plus the
  uptime of the new boot (CLOCK_MONOTONIC counts from the kernel's boot, and the machine
  was off for at least zero seconds). A quota day past the certain day is provisional:
  a vehicle's usage on every day from the certain day on counts against it, so a clock
  set forward gains nothing (docs/operations.md says what it costs across a real midnight).
  Until the first signed moment (a new station, before any document came) there is no
  certain time and no provisional day: nothing can be sold without signed documents.
  The certain time (and headquarters' estimate, less MAX_DRIFT) is also a lower bound
  for the clock: a clock behind it is untrusted, and expiry is never judged behind it,
  so setting the clock back cannot make an expired root, list or token fresh again.
  After a reboot it trails real time by at least the time the power was off, and that
  lag stays until the next signed moment (`lag`; the station raises `clock_lag`).
"""

from __future__ import annotations

import copy
import dataclasses
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
# A wall clock this many days past the certain day is not believed at all.
MAX_PROVISIONAL_DAYS = 62
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def local_day(instant: dt.datetime, zone: str) -> str:
    return (instant.astimezone(dt.UTC) + dt.timedelta(hours=ZONES[zone])).date().isoformat()


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def boot_mono() -> float:
    """The monotonic clock's value when this boot began: CLOCK_MONOTONIC starts at zero."""
    return 0.0


@dataclass(frozen=True)
class ClockReading:
    now: dt.datetime  # what the wall clock says
    trusted: bool
    effective: dt.datetime  # the clock if trusted, otherwise the best bound we have
    quota_day: str
    ahead: bool = False  # untrusted because it runs ahead of headquarters' signed time
    since_day: str = ""  # first day whose usage counts against quota_day ("": quota_day alone)

    @property
    def usage_days(self) -> list[str]:
        """The local days whose usage counts against this quota day, oldest first."""
        if not self.since_day or self.since_day >= self.quota_day:
            return [self.quota_day]
        first, last = dt.date.fromisoformat(self.since_day), dt.date.fromisoformat(self.quota_day)
        return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


class ClockGuard:
    def __init__(self, zone: str, build_floor: dt.datetime = BUILD_FLOOR) -> None:
        self.zone = zone
        self.floor = build_floor
        self.last_trusted_day: str | None = None
        self.anchor: tuple[dt.datetime, float] | None = None  # (headquarters' time, monotonic then)
        # (a moment surely past, monotonic then): real time >= moment + monotonic time since.
        self.certain: tuple[dt.datetime, float] | None = None

    def observe(self, moment: dt.datetime | None, wall_now: dt.datetime | None = None,
                mono: float | None = None) -> None:
        """Raise the floor to a moment known to have passed. `wall_now` given: the moment
        came in a message, and may move the floor only MAX_FLOOR_STEP past what we know.
        `mono` given: headquarters signed it, so it is certain as well (as far as bounded)."""
        if moment is None:
            return
        if wall_now is not None:
            moment = min(moment, max(self.floor, wall_now) + MAX_FLOOR_STEP)
        self.floor = max(self.floor, moment)
        if mono is not None:
            self.raise_certain(moment, mono)

    def certain_now(self, mono: float) -> dt.datetime | None:
        if self.certain is None:
            return None
        at, since = self.certain
        return at + dt.timedelta(seconds=max(0.0, mono - since))

    def raise_certain(self, moment: dt.datetime, mono: float) -> None:
        current = self.certain_now(mono)
        if current is None or moment > current:
            self.certain = (moment, mono)

    def certain_json(self, mono: float) -> str | None:
        now = self.certain_now(mono)
        return None if now is None else json.dumps({"at": now.isoformat(), "mono": mono, "boot": boot_id()})

    def restore_certain(self, text: str | None, mono: float) -> None:
        """A certain time saved earlier: in this boot it goes on from when it was saved; from
        another boot, from this boot's start (the time the machine was off is unknown)."""
        try:
            saved = json.loads(text or "")
            at = dt.datetime.fromisoformat(saved["at"])
            since = float(saved["mono"]) if saved["boot"] and saved["boot"] == boot_id() else boot_mono()
        except (ValueError, KeyError, TypeError):
            return
        current = self.certain_now(mono)
        if current is None or at + dt.timedelta(seconds=max(0.0, mono - since)) > current:
            self.certain = (at, since)

    def judged(self, now: dt.datetime, mono: float) -> dt.datetime:
        """The time expiry is judged by, without changing anything (any thread may ask):
        never behind the floor nor behind what is proven past (the certain time,
        headquarters' estimate less the drift), never ahead of the estimate plus drift.
        A clock set back therefore cannot make an expired root or list fresh again."""
        lower = self.lower_bound(mono)
        estimate = self.estimate(mono)
        if estimate is not None and now > estimate + MAX_DRIFT:
            return max(estimate, lower)
        return max(now, lower)

    def lower_bound(self, mono: float) -> dt.datetime:
        """The latest moment surely past: the floor, the certain time, and headquarters'
        estimate less the drift headquarters' own clock may have."""
        bounds = [self.floor]
        certain = self.certain_now(mono)
        if certain is not None:
            bounds.append(certain)
        estimate = self.estimate(mono)
        if estimate is not None:
            bounds.append(estimate - MAX_DRIFT)
        return max(bounds)

    def proven(self, mono: float) -> dt.datetime | None:
        """The certain time or headquarters' estimate, whichever is later (None: neither)."""
        known = [t for t in (self.certain_now(mono), self.estimate(mono)) if t is not None]
        return max(known) if known else None

    def lag(self, now: dt.datetime, mono: float) -> dt.timedelta:
        """How far the certain time trails the wall clock (zero without a certain time). After
        an offline reboot it is at least the time the power was off, and it stays until a
        signed moment comes (docs/operations.md, "After a reboot")."""
        certain = self.certain_now(mono)
        return dt.timedelta(0) if certain is None else max(dt.timedelta(0), now - certain)

    @staticmethod
    def floor_to_journal(reading: ClockReading) -> dt.datetime | None:
        """The wall time a fill's close may save as the floor: only a trusted and confirmed
        reading. A provisional one (past the certain day) may be a clock set forward, up to
        MAX_PROVISIONAL_DAYS: saved, it would make lists and the root look expired early
        after the clock is put right and the agent restarted."""
        return reading.now if reading.trusted and not reading.since_day else None

    def peek(self, now: dt.datetime, mono: float) -> ClockReading:
        """`read` without changing anything: for reports (the heartbeat)."""
        return copy.copy(self).read(now, mono)

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
        self.raise_certain(moment, mono)
        current = self.estimate(mono)
        if current is not None and moment <= current:
            return False
        self.anchor = (moment, mono)
        return True

    def anchor_json(self) -> str:
        assert self.anchor is not None
        return json.dumps({"at": self.anchor[0].isoformat(), "mono": self.anchor[1], "boot": boot_id()})

    def restore_anchor(self, text: str | None, mono: float | None = None) -> None:
        """An anchor saved earlier in this boot (monotonic time is per boot). From another
        boot it bounds nothing above, but its moment is still certain."""
        try:
            saved = json.loads(text or "")
            if saved["boot"] and saved["boot"] == boot_id():
                self.anchor = (dt.datetime.fromisoformat(saved["at"]), float(saved["mono"]))
        except (ValueError, KeyError, TypeError):
            return
        finally:
            if mono is not None:
                self.restore_certain(text, mono)

    def _correct(self, estimate: dt.datetime) -> None:
        """Headquarters' time is the authority: a floor or a quota day that a clock set
        forward left in the future (before any acknowledgement bounded it) comes back."""
        if self.floor > estimate + MAX_DRIFT:
            self.floor = estimate
        real_day = local_day(estimate + MAX_DRIFT, self.zone)
        if self.last_trusted_day is not None and self.last_trusted_day > real_day:
            self.last_trusted_day = real_day

    def read(self, now: dt.datetime, mono: float) -> ClockReading:
        """What the clock says and which quota day it is; the certain time marks days past
        it provisional (`since_day`). `mono` is required: every reading goes through the
        ceiling and the certain time (a reading without them once moved the quota day)."""
        before = self.last_trusted_day
        reading = self._read(now, mono)
        certain = self.certain_now(mono)
        if certain is None:
            return reading
        certain_day = local_day(certain + TOLERANCE, self.zone)
        if reading.quota_day <= certain_day:
            return reading
        ahead = dt.date.fromisoformat(reading.quota_day) - dt.date.fromisoformat(certain_day)
        if ahead.days > MAX_PROVISIONAL_DAYS:  # not believed at all: the certain time stands in
            self.last_trusted_day = before
            return ClockReading(now, False, self.lower_bound(mono), certain_day)
        return dataclasses.replace(reading, since_day=certain_day)

    def _read(self, now: dt.datetime, mono: float) -> ClockReading:
        estimate = self.estimate(mono)
        if estimate is not None:
            self._correct(estimate)
            if now > estimate + MAX_DRIFT:
                # Set forward: the day follows headquarters' time, never the local clock.
                effective = max(estimate, self.lower_bound(mono))
                day = local_day(effective, self.zone)
                self.last_trusted_day = max(day, self.last_trusted_day or "")
                return ClockReading(now, False, effective, self.last_trusted_day, ahead=True)
        proven = self.proven(mono)
        # Headquarters' clock may run MAX_DRIFT ahead of real time (as the ceiling allows).
        if now >= self.floor - TOLERANCE and (proven is None or now >= proven - MAX_DRIFT):
            day = local_day(now, self.zone)
            if self.last_trusted_day is None or day > self.last_trusted_day:
                self.last_trusted_day = day
            # A trusted clock slightly behind the floor still cannot go back a day.
            day = max(day, self.last_trusted_day)
            # Expiry is judged never behind what is proven past, even within the tolerances.
            return ClockReading(now, True, max(now, self.lower_bound(mono)), day)
        # Behind a moment surely past (set back, or a Pi booted at 1970): the day never goes
        # back, and moves on only as far as what is proven past (never the floor alone: one
        # signed message may move that a day ahead).
        day = max(self.last_trusted_day or local_day(self.floor, self.zone),
                  "" if proven is None else local_day(proven, self.zone))
        if proven is not None:
            self.last_trusted_day = day
        return ClockReading(now, False, self.lower_bound(mono), day)
