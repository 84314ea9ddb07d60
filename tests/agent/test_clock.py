"""Clock trust and the quota day in WIB, WITA and WIT: day boundaries, a clock that jumps
back, and one that starts at 1970 (a Pi without a clock chip)."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.clock import BUILD_FLOOR, ClockGuard, local_day

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("zone", "midnight_utc"), [("WIB", "17:00"), ("WITA", "16:00"), ("WIT", "15:00")])
def test_quota_day_turns_at_local_midnight(zone: str, midnight_utc: str) -> None:
    guard = ClockGuard(zone)
    boundary = at(f"2026-12-01T{midnight_utc}:00")
    before = guard.read(boundary - dt.timedelta(seconds=1))
    after = guard.read(boundary)
    assert before.trusted and after.trusted
    assert before.quota_day == "2026-12-01"
    assert after.quota_day == "2026-12-02"


@pytest.mark.parametrize("zone", ["WIB", "WITA", "WIT"])
def test_clock_jumping_back_keeps_the_last_trusted_day(zone: str) -> None:
    guard = ClockGuard(zone)
    today = guard.read(at("2026-12-05T03:00:00"))
    guard.observe(at("2026-12-05T03:00:00"))  # a journal entry at that time
    jumped = guard.read(at("2026-12-04T01:00:00"))  # NTP glitch or a bad RTC write
    assert not jumped.trusted
    assert jumped.quota_day == today.quota_day, "quota must not reset to a fresh day"
    assert jumped.effective == at("2026-12-05T03:00:00")


@pytest.mark.parametrize("zone", ["WIB", "WITA", "WIT"])
def test_clock_starting_at_1970_is_untrusted_and_never_a_fresh_day(zone: str) -> None:
    guard = ClockGuard(zone)
    guard.observe(at("2026-12-10T08:00:00"))  # newest signed document's creation time
    reading = guard.read(at("1970-01-01T00:00:05"))
    assert not reading.trusted
    assert reading.quota_day == local_day(at("2026-12-10T08:00:00"), zone)
    # once NTP sets the clock, it is trusted again and the day moves on normally
    later = guard.read(at("2026-12-10T20:00:00"))
    assert later.trusted and later.quota_day == local_day(at("2026-12-10T20:00:00"), zone)


def test_untrusted_after_a_trusted_day_uses_that_day() -> None:
    guard = ClockGuard("WIB")
    guard.read(at("2026-12-20T10:00:00"))  # trusted: 2026-12-20 local
    guard.observe(at("2026-12-20T10:00:00"))
    assert guard.read(at("1970-01-01T00:00:00")).quota_day == "2026-12-20"


def test_small_backward_step_within_tolerance_is_trusted_but_day_never_goes_back() -> None:
    guard = ClockGuard("WIB")
    guard.read(at("2026-12-01T17:00:30"))  # just after local midnight: 2026-12-02
    guard.observe(at("2026-12-01T17:00:30"))
    reading = guard.read(at("2026-12-01T16:59:00"))  # 90 s back: NTP slew
    assert reading.trusted
    assert reading.quota_day == "2026-12-02"


def test_build_floor_alone_rejects_an_unset_clock() -> None:
    assert not ClockGuard("WIT").read(BUILD_FLOOR - dt.timedelta(days=1)).trusted
    assert ClockGuard("WIT").read(BUILD_FLOOR + dt.timedelta(days=1)).trusted
