"""Clock trust and the quota day in WIB, WITA and WIT: day boundaries, a clock that jumps
back, and one that starts at 1970 (a Pi without a clock chip); the certain time (a lower
bound on real time) against a clock set back, its lag over offline reboots, and readings
that must change nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

import agent.clock
from agent.clock import BUILD_FLOOR, ClockGuard, local_day
from agent.presence import heartbeat
from agent.trust.root import TrustError, TrustStore
from tests.allowlist_fixtures import Headquarters

UTC = dt.UTC
MONO = 0.0  # no signed time in these tests: the monotonic clock bounds nothing


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("zone", "midnight_utc"), [("WIB", "17:00"), ("WITA", "16:00"), ("WIT", "15:00")])
def test_quota_day_turns_at_local_midnight(zone: str, midnight_utc: str) -> None:
    guard = ClockGuard(zone)
    boundary = at(f"2026-12-01T{midnight_utc}:00")
    before = guard.read(boundary - dt.timedelta(seconds=1), MONO)
    after = guard.read(boundary, MONO)
    assert before.trusted and after.trusted
    assert before.quota_day == "2026-12-01"
    assert after.quota_day == "2026-12-02"


@pytest.mark.parametrize("zone", ["WIB", "WITA", "WIT"])
def test_clock_jumping_back_keeps_the_last_trusted_day(zone: str) -> None:
    guard = ClockGuard(zone)
    today = guard.read(at("2026-12-05T03:00:00"), MONO)
    guard.observe(at("2026-12-05T03:00:00"))  # a journal entry at that time
    jumped = guard.read(at("2026-12-04T01:00:00"), MONO)  # NTP glitch or a bad RTC write
    assert not jumped.trusted
    assert jumped.quota_day == today.quota_day, "quota must not reset to a fresh day"
    assert jumped.effective == at("2026-12-05T03:00:00")


@pytest.mark.parametrize("zone", ["WIB", "WITA", "WIT"])
def test_clock_starting_at_1970_is_untrusted_and_never_a_fresh_day(zone: str) -> None:
    guard = ClockGuard(zone)
    guard.observe(at("2026-12-10T08:00:00"))  # newest signed document's creation time
    reading = guard.read(at("1970-01-01T00:00:05"), MONO)
    assert not reading.trusted
    assert reading.quota_day == local_day(at("2026-12-10T08:00:00"), zone)
    # once NTP sets the clock, it is trusted again and the day moves on normally
    later = guard.read(at("2026-12-10T20:00:00"), MONO)
    assert later.trusted and later.quota_day == local_day(at("2026-12-10T20:00:00"), zone)


def test_untrusted_after_a_trusted_day_uses_that_day() -> None:
    guard = ClockGuard("WIB")
    guard.read(at("2026-12-20T10:00:00"), MONO)  # trusted: 2026-12-20 local
    guard.observe(at("2026-12-20T10:00:00"))
    assert guard.read(at("1970-01-01T00:00:00"), MONO).quota_day == "2026-12-20"


def test_small_backward_step_within_tolerance_is_trusted_but_day_never_goes_back() -> None:
    guard = ClockGuard("WIB")
    guard.read(at("2026-12-01T17:00:30"), MONO)  # just after local midnight: 2026-12-02
    guard.observe(at("2026-12-01T17:00:30"))
    reading = guard.read(at("2026-12-01T16:59:00"), MONO)  # 90 s back: NTP slew
    assert reading.trusted
    assert reading.quota_day == "2026-12-02"


def test_build_floor_alone_rejects_an_unset_clock() -> None:
    assert not ClockGuard("WIT").read(BUILD_FLOOR - dt.timedelta(days=1), MONO).trusted
    assert ClockGuard("WIT").read(BUILD_FLOOR + dt.timedelta(days=1), MONO).trusted


# --- the review of the certain time (issue 17, items 2 and 9) ------------------------------

WIB = dt.timezone(dt.timedelta(hours=7))


def wib(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=WIB).astimezone(UTC)


def rebooted(saved: str, monkeypatch: pytest.MonkeyPatch, boot: str) -> ClockGuard:
    """A guard after a reboot (another boot id, monotonic time from zero) with `saved` restored."""
    monkeypatch.setattr(agent.clock, "boot_id", lambda: boot)
    guard = ClockGuard("WIB")
    guard.restore_certain(saved, 0.0)
    return guard


def certain_at_ten_pm(monkeypatch: pytest.MonkeyPatch) -> str:
    """Boot A saw headquarters' time at 22:00 WIB on the 10th and saved it a minute later."""
    monkeypatch.setattr(agent.clock, "boot_id", lambda: "A")
    guard = ClockGuard("WIB")
    guard.observe(wib(10, 22), wib(10, 22), mono=0.0)
    saved = guard.certain_json(60.0)
    assert saved is not None
    return saved


def test_item9_clock_set_back_does_not_revive_an_expired_root(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path / "hq")
    store = TrustStore.from_root_file(hq.root_file())
    expiry = store.root.expires
    guard = ClockGuard("WIB")
    # Headquarters' last acknowledgement a minute before the root expired; two days pass.
    guard.observe_hq_time(expiry - dt.timedelta(minutes=1), 1000.0, expiry - dt.timedelta(minutes=1))
    mono = 1000.0 + 2 * 86400
    wall = {"now": expiry + dt.timedelta(days=2)}
    store.clock = lambda: guard.judged(wall["now"], mono)
    with pytest.raises(TrustError, match="root expired"):
        store.check_fresh("allowlist")
    wall["now"] = expiry - dt.timedelta(minutes=2)  # the clock set back to before the expiry
    with pytest.raises(TrustError, match="root expired"):
        store.check_fresh("allowlist")
    reading = guard.read(wall["now"], mono)
    assert not reading.trusted and reading.effective >= expiry + dt.timedelta(days=2) - dt.timedelta(minutes=1)


def test_item2_clock_behind_the_certain_time_is_untrusted_and_expiry_uses_the_certain_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent.clock, "boot_id", lambda: "one")
    guard = ClockGuard("WIB")
    guard.observe(wib(10, 22), wib(10, 22), mono=0.0)  # a signed document created then
    honest = guard.read(wib(12, 9), 35 * 3600.0)
    assert honest.trusted and honest.quota_day == "2026-12-12"
    # Set back two days (a list that expired yesterday would look valid): not believed.
    back = guard.read(wib(10, 9), 35 * 3600.0)
    assert not back.trusted and back.effective == wib(12, 9) and back.quota_day == "2026-12-12"
    # A trusted clock a few minutes behind (within the drift) judges expiry by the certain time.
    slow = guard.read(wib(12, 8, 55), 35 * 3600.0)
    assert slow.trusted and slow.effective == wib(12, 9)
    assert guard.judged(wib(10, 9), 35 * 3600.0) == wib(12, 9)


def test_item2_certain_time_lag_stays_offline_and_adds_up_over_reboots(monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/operations.md states: the power-off time stays as lag until a signed
    moment comes, each offline reboot adds its own, and no midnight is forgiven."""
    monkeypatch.setattr(agent.clock, "boot_id", lambda: "b0")
    guard = ClockGuard("WIB")
    guard.observe(wib(10, 22), wib(10, 22), mono=0.0)
    saved = guard.certain_json(3600.0)  # saved at 23:00, just before the cut
    assert saved is not None
    for night in (1, 2, 3, 4):  # off 23:00-06:00 every night, link down all week
        guard = rebooted(saved, monkeypatch, f"b{night}")
        midday = wib(10 + night, 15)
        mono = (midday - wib(10 + night, 6)).total_seconds()
        assert guard.lag(midday, mono) == dt.timedelta(hours=7 * night)
        reading = guard.read(midday, mono)
        # Up to 24 h of lag, mornings only; past it yesterday's litres count all day.
        assert reading.usage_days[0] == (f"2026-12-{9 + night}" if 7 * night > 15 else f"2026-12-{10 + night}")
        saved = guard.certain_json((wib(10 + night, 23) - wib(10 + night, 6)).total_seconds())
        assert saved is not None
    # Headquarters' signed time (an acknowledgement) heals it at once.
    guard.observe_hq_time(wib(14, 16), mono + 60, wib(14, 16))
    assert guard.lag(wib(14, 16), mono + 60) == dt.timedelta(0)


def test_item2_provisional_reading_is_never_journaled_as_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = certain_at_ten_pm(monkeypatch)
    guard = rebooted(saved, monkeypatch, "B")
    forward = guard.read(wib(10, 22) + dt.timedelta(days=40), 120.0)  # a clock 40 days ahead: provisional
    assert forward.trusted and forward.since_day == "2026-12-10"
    assert ClockGuard.floor_to_journal(forward) is None
    # Confirmed by the certain time (the same boot, an honest clock): saved as the floor.
    confirmed = rebooted(saved, monkeypatch, "C").read(wib(10, 22, 5), 300.0)
    assert confirmed.trusted and not confirmed.since_day
    assert ClockGuard.floor_to_journal(confirmed) == wib(10, 22, 5)


def test_item2_heartbeat_reading_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat reads the clock (agent/presence.py): with a clock 100 days ahead after
    an offline reboot, the quota day must not move to it and stay there once corrected."""
    saved = certain_at_ten_pm(monkeypatch)
    guard = rebooted(saved, monkeypatch, "B")
    guard.last_trusted_day = "2026-12-10"
    station = SimpleNamespace(
        config=SimpleNamespace(station_id="12.345.67"), pumps={}, locked=set(), clock=guard,
        docs=SimpleNamespace(allowlist=None, policy=None),
        journal=SimpleNamespace(outbox_depth=lambda: 0),
        outbox=SimpleNamespace(in_flight=0, drain_rate=lambda mono: 0.0, resends=0),
        link=SimpleNamespace(connected=True), updates=None,
        disk=SimpleNamespace(state=SimpleNamespace(as_dict=lambda: {})))
    # Two minutes into the new boot (the guard's monotonic time started at 0 with it).
    beat = heartbeat(station, wib(10, 22) + dt.timedelta(days=100), mono=120.0)
    assert not beat["clock"]["trusted"] and beat["clock"]["quota_day"] == "2026-12-10"
    assert guard.last_trusted_day == "2026-12-10"
    corrected = guard.read(wib(10, 22, 5), 300.0)
    assert corrected.trusted and corrected.quota_day == "2026-12-10"
