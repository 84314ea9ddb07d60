"""A full data disk with fills in flight, on a small filesystem the test mounts: the loop
keeps going, every litre is journaled, new sales are refused with a clear line while the
journal cannot take them, the alarm shows on the dashboard and heartbeat, and sales resume
when space comes back. Plus the disk guard's levels and reserve on their own."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli.demo import DemoStation
from agent.config import StationConfig
from agent.disk_guard import FULL, OK, READ_ONLY, DiskGuard, DiskPolicy, write_with_reserve
from agent.domain import PRODUCTS
from simulators.broker import MosquittoBroker
from tests.small_fs import fill_up, small_filesystem

MB = 1024 * 1024


class SmallDiskDemo(DemoStation):
    def config(self) -> StationConfig:
        return dataclasses.replace(super().config(), disk=DiskPolicy(warn_free_mb=6, refuse_free_mb=3, reserve_mb=2))


def _token(demo: DemoStation, product: str, skip: set[int]) -> str:
    entry = next(e for e in demo.registry if e.status == "active" and e.products & PRODUCTS[product]
                 and e.category == "private_car" and e.vehicle_id not in skip)
    skip.add(entry.vehicle_id)
    return demo.token(entry.vehicle_id)


def _start_fill(demo: DemoStation, pump: int, token: str) -> dict[str, Any] | None:
    demo.scanners[pump].scan(token)
    decision = demo.tracker.next(pump, "decision", 5.0)
    if decision is None or not decision["ok"]:
        return decision
    deadline = time.monotonic() + 5
    while not demo.board.relay_closed(pump - 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    demo.board.lift_nozzle(pump - 1)
    return decision


def _journaled(path: Path) -> dict[int, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {int(p): int(ml) for p, ml in db.execute(
            "SELECT pump, SUM(dispensed_ml) FROM sessions WHERE state='closed' GROUP BY pump")}
    finally:
        db.close()


@pytest.mark.integration
def test_full_disk_with_fills_in_flight(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", 24) as mount:
        demo = SmallDiskDemo(pumps=2, flow_lps=2.0, broker=mosquitto, workdir=mount / "demo", quiet=True)
        used: set[int] = set()
        try:
            demo.start()
            station = demo.station
            assert station is not None and station.disk.state.level == OK
            deadline = time.monotonic() + 8  # made by the first disk tick, off the start-up path
            while station.disk.check().reserve_bytes < 2 * MB and time.monotonic() < deadline:
                time.sleep(0.1)
            assert station.disk.state.reserve_bytes == 2 * MB
            start = {n: demo.board.totaliser_ml(n - 1) for n in (1, 2)}
            for pump, product in ((1, "pertalite"), (2, "solar")):
                decision = _start_fill(demo, pump, _token(demo, product, used))
                assert decision is not None and decision["ok"], decision
            time.sleep(1.0)  # both are pumping
            filled = fill_up(mount / "someone-elses.log")
            assert filled > 0 and os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize < MB
            time.sleep(1.0)
            for pump in (1, 2):
                demo.board.hang_nozzle(pump - 1)
            closed = [demo.tracker.next(pump, "transaction", 20.0) for pump in (1, 2)]
            assert all(tx is not None for tx in closed), closed

            # No new sale on a disk the journal cannot be trusted to take: a clear refusal.
            refused = _start_fill(demo, 1, _token(demo, "pertalite", used))
            assert refused is not None and not refused["ok"] and refused["reason"] == "disk_full", refused
            assert any("penyimpanan penuh" in line for line in demo.lines), demo.lines[-5:]
            deadline = time.monotonic() + 8
            while "disk_full" not in station.live.alerts and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "disk_full" in station.live.alerts  # on the dashboard's alarm list
            assert station.disk.state.as_dict()["state"] == FULL  # and in the heartbeat
            assert demo._thread is not None and demo._thread.is_alive(), "the station's loop died"

            (mount / "someone-elses.log").unlink()  # the technician frees space
            deadline = time.monotonic() + 8
            while "disk_full" in station.live.alerts and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "disk_full" not in station.live.alerts
            deadline = time.monotonic() + 10  # in its own thread, off the loop
            while station.disk.check().reserve_bytes < 2 * MB and time.monotonic() < deadline:
                time.sleep(0.1)
            assert station.disk.state.reserve_bytes == 2 * MB, "the reserve is made again"
            again = _start_fill(demo, 1, _token(demo, "pertalite", used))
            assert again is not None and again["ok"], again
            time.sleep(0.5)
            demo.board.hang_nozzle(0)
            assert demo.tracker.next(1, "transaction", 20.0) is not None
            # Every litre the pumps' totalisers counted is in the journal.
            journal = _journaled(demo.journal_path)
            for pump in (1, 2):
                assert journal.get(pump, 0) == demo.board.totaliser_ml(pump - 1) - start[pump], (pump, journal)
            assert not any("gangguan sistem" in line for line in demo.lines)  # never "internal error"
        finally:
            demo.close()


def test_disk_guard_levels_reserve_and_read_only(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", 8) as mount:
        data = mount / "data"
        data.mkdir()
        guard = DiskGuard(data, DiskPolicy(warn_free_mb=5, refuse_free_mb=2, reserve_mb=1))
        assert guard.refresh().level == OK
        deadline = time.monotonic() + 10  # written in its own thread
        while guard.check().reserve_bytes < MB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guard.state.reserve_bytes == MB
        fill_up(mount / "filler")
        state = guard.check()
        assert state.level == FULL and not state.sales_allowed

        # A write that fails while the disk is full succeeds once the reserve is given back.
        attempts: list[bool] = []

        def write() -> None:
            attempts.append(True)
            if (data / "reserve.space").exists():
                raise sqlite3.OperationalError("database or disk is full")

        write_with_reserve(guard, write)
        assert len(attempts) == 2 and not (data / "reserve.space").exists()
        with pytest.raises(sqlite3.OperationalError):  # no reserve left: the caller keeps the session open
            write_with_reserve(guard, lambda: (_ for _ in ()).throw(sqlite3.OperationalError("disk is full")))
        with pytest.raises(ValueError):  # not a disk error: not swallowed
            write_with_reserve(guard, lambda: (_ for _ in ()).throw(ValueError("a bug")))

    with small_filesystem(tmp_path / "ro", 4) as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, timeout=30)
        assert DiskGuard(mount, DiskPolicy()).check().level == READ_ONLY


@pytest.mark.integration
def test_a_close_the_journal_cannot_take_waits_and_is_retried(mosquitto: MosquittoBroker, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    demo = SmallDiskDemo(pumps=1, flow_lps=5.0, broker=mosquitto, workdir=tmp_path / "demo", quiet=True)
    try:
        demo.start()
        station = demo.station
        assert station is not None
        real_close = station.journal.close_session
        broken = {"on": True}

        def close_session(*args: Any, **kwargs: Any) -> None:
            if broken["on"]:  # the disk is full and the reserve is already spent
                raise sqlite3.OperationalError("database or disk is full")
            real_close(*args, **kwargs)

        monkeypatch.setattr(station.journal, "close_session", close_session)
        station.disk.release_reserve()
        start = demo.board.totaliser_ml(0)
        used: set[int] = set()
        assert (_start_fill(demo, 1, _token(demo, "pertalite", used)) or {}).get("ok")
        time.sleep(0.8)
        demo.board.hang_nozzle(0)
        deadline = time.monotonic() + 5
        while not any("belum tercatat" in line for line in demo.lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("belum tercatat" in line for line in demo.lines), demo.lines[-3:]
        assert "journal_unwritable:1" in station.live.alerts
        busy = _start_fill(demo, 1, _token(demo, "pertalite", used))
        assert busy is not None and busy["reason"] == "pump_busy"  # the pump waits for its record
        assert demo._thread is not None and demo._thread.is_alive()
        broken["on"] = False
        tx = demo.tracker.next(1, "transaction", 10.0)
        assert tx is not None and tx["dispensed_ml"] == demo.board.totaliser_ml(0) - start > 0
        assert _journaled(demo.journal_path) == {1: tx["dispensed_ml"]}
    finally:
        demo.close()


def test_a_new_vehicle_list_is_refused_up_front_without_room_for_it(tmp_path: Path) -> None:
    from tests.allowlist_fixtures import Headquarters, registry
    from tests.allowlist_fixtures import Station as SyncStation

    hq = Headquarters(tmp_path / "hq")
    version = hq.release(registry(3000))
    with small_filesystem(tmp_path / "small", 4) as mount:
        station = SyncStation(mount / "station", hq.root_file())
        filler = mount / "filler"
        fill_up(filler)
        station.offer(hq.manifest(version), hq.chunks(version))
        assert station.rejected() == ["disk_space"] and station.current() is None
        assert any("MB free" in e.detail for e in station.events if e.kind == "rejected")
        filler.unlink()
        station.offer(hq.manifest(version), hq.chunks(version))
        assert station.installed() == [version] and station.current() == version
