"""Fleet update end to end on real mosquitto with two simulated stations.

Each station is the real agent running from its own release venv (built offline from this
project's wheel) under a supervisor that does what systemd does (release switch before
every start, restart on exit, watchdog), a relay board running the real firmware on a pty,
and a serial scanner. Headquarters builds, signs and publishes releases; stations report
on spbu/v1/<station>/update.

  - 0.2.0 (with relay-board firmware 2) goes to the 1 % cohort first (one station), then
    to everyone: the agent installs, the board's firmware is updated over its UART, and
    both report;
  - 0.3.0's agent exits at start: each station rolls back by itself, reports why, tries
    once more and parks it;
  - 0.4.0 carries firmware that never says hello: each board's boot guard restores
    firmware 2, the relays never close, the agent rolls back to 0.2.0 and says why;
  - a manifest signed by a non-`software` key, an old version and a tampered chunk are
    refused and reported, and the stations stay on 0.2.0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent import topics
from agent.allowlist.chunks import ChunkStore
from agent.config import PumpConfig, StationConfig, render_config
from agent.update_config import UpdateConfig
from agent.updates.manifest import cohort_bucket
from agent.updates.store import ReleaseStore
from agent.updates.switch import Switch
from hq import software_release as sr
from hq.rollout import RolloutTracker
from simulators.broker import MosquittoBroker
from simulators.flash import seed_flash
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim
from simulators.service_supervisor import ServiceSupervisor
from tests.allowlist_fixtures import Headquarters
from tests.conftest import validate
from tests.helpers import MqttRecorder, wait_until
from tests.release_fixtures import BASE_SITE, build_base_wheel, firmware_files, wheel_variant

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HEALTH_WINDOW_S = 4.0
BOARD_TRIAL_MS = 3000


def _station_ids() -> tuple[str, str]:
    """One station in the 1 % cohort, one outside the 10 % cohort (stable hashes)."""
    ids = [f"34.{a:03d}.{b:02d}" for a in range(100, 400) for b in range(1, 20)]
    first = next(s for s in ids if cohort_bucket(s) == 0)
    second = next(s for s in ids if cohort_bucket(s) >= 10)
    return first, second


@dataclass
class SimStation:
    station_id: str
    directory: Path
    board: RelayBoardSim
    scanner: ScannerSim
    supervisor: ServiceSupervisor

    def started(self) -> list[str]:
        return [s.release for s in self.supervisor.starts]

    def current(self) -> str:
        return Switch(self.directory / "releases", self.directory / "update").current() or ""

    def log(self) -> str:
        return (self.directory / "agent.log").read_text(errors="replace")[-6000:]


def _install_first_release(directory: Path, release: Path) -> None:
    """What deploy/install.sh leaves: release 0.1.0 staged and current."""
    chunks = ChunkStore(directory / "update" / "chunks")
    for digest, data in sr.chunks(release).items():
        chunks.put(digest, len(data), data)
    raw = (release / "manifest.json").read_bytes()
    from agent.updates import manifest as rm

    ReleaseStore(directory / "releases", chunks, BASE_SITE).stage(rm.parse(json.loads(raw)["signed"], raw))
    (directory / "releases" / "current").symlink_to("0.1.0")
    chunks.clear()


def _make_station(broker: MosquittoBroker, root: Path, station_id: str, directory: Path,
                  first: Path) -> SimStation:
    directory.mkdir(parents=True)
    seed_flash(directory / "flash")
    board = RelayBoardSim(channels=1, flash=directory / "flash", trial_ms=BOARD_TRIAL_MS)
    board.start()
    scanner = ScannerSim()
    config = StationConfig(
        station_id=station_id, zone="WIB", data_dir=directory / "data", broker_host=broker.host,
        broker_port=broker.port, trusted_keys={}, trust_root=root, relay_board_port=board.path,
        pumps=(PumpConfig(1, "pertalite", 0, scanner.path),),
        update=UpdateConfig(directory / "releases", directory / "update", health_window_s=HEALTH_WINDOW_S,
                            base_site=BASE_SITE, board_trial_ms=BOARD_TRIAL_MS))
    config_path = directory / "agent.toml"
    config_path.write_text(render_config(config))
    _install_first_release(directory, first)
    supervisor = ServiceSupervisor(directory / "releases", directory / "update", config_path,
                                   directory / "data" / "journal.sqlite", directory / "agent.log")
    supervisor.start()
    return SimStation(station_id, directory, board, scanner, supervisor)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Wheels of 0.1.0 .. 0.4.0; 0.3.0's agent exits as soon as it starts."""
    work = tmp_path_factory.mktemp("wheels")
    base = build_base_wheel(work)
    broken = {"agent/service.py": lambda text: text.replace(
        "    station.start()\n", "    raise SystemExit('release 0.3.0: broken on purpose')\n", 1)}
    return {"0.1.0": base, "0.2.0": wheel_variant(base, work, "0.2.0"),
            "0.3.0": wheel_variant(base, work, "0.3.0", broken), "0.4.0": wheel_variant(base, work, "0.4.0"),
            "0.5.0": wheel_variant(base, work, "0.5.0")}


@pytest.fixture
def fleet(mosquitto: MosquittoBroker, tmp_path: Path, releases: dict[str, Path]
          ) -> Iterator[tuple[Headquarters, list[SimStation], MqttRecorder]]:
    hq = Headquarters(tmp_path / "hq")
    root = hq.root_file()
    first = tmp_path / "release-0.1.0"
    sr.build(first, "0.1.0", 1, [releases["0.1.0"]])
    sr.sign(first, hq.role_keys["software"])
    reports = MqttRecorder(mosquitto, [topics.UPDATE_ALL], "test-update-reports")
    stations = [_make_station(mosquitto, root, sid, tmp_path / sid, first) for sid in _station_ids()]
    try:
        yield hq, stations, reports
    finally:
        for station in stations:
            station.supervisor.close()
            station.board.close()
            station.scanner.close()
        reports.close()
        publisher = sr.ReleasePublisher(mosquitto.host, mosquitto.port, "test-update-cleanup")
        publisher.put(topics.SOFTWARE_MANIFEST, b"")  # the session's broker outlives this test
        publisher.close()


def last_report(reports: MqttRecorder, station: str) -> dict[str, Any]:
    mine = [p for t, p in reports.received(lambda t: t == topics.update(station))]
    return mine[-1] if mine else {}


def _publish(mosquitto: MosquittoBroker, out: Path, manifest: bytes, tamper: bool = False) -> None:
    publisher = sr.ReleasePublisher(mosquitto.host, mosquitto.port, f"test-hq-{out.name}")
    pieces = sr.chunks(out)
    if tamper:
        digest = next(iter(pieces))
        pieces[digest] = pieces[digest][:-1] + bytes([pieces[digest][-1] ^ 0xFF])
    publisher.publish(manifest, pieces)
    publisher.close()


def test_fleet_update_install_rollback_park_and_refusals(mosquitto: MosquittoBroker, tmp_path: Path,
                                                        releases: dict[str, Path], fleet: Any) -> None:
    hq, stations, reports = fleet
    a, b = stations
    for s in stations:
        def on_first(s: SimStation = s) -> bool:
            return last_report(reports, s.station_id).get("running") == "0.1.0"
        assert wait_until(on_first, 120), s.log()

    # 0.2.0 to the 1 % cohort: only station a takes it.
    good = tmp_path / "release-0.2.0"
    sr.build(good, "0.2.0", 2, [releases["0.2.0"]], percent=1, firmware=firmware_files(2, into=tmp_path),
             firmware_version=2)
    _publish(mosquitto, good, sr.sign(good, hq.role_keys["software"]))
    assert wait_until(lambda: last_report(reports, a.station_id).get("state") == "installed", 120), a.log()
    assert last_report(reports, a.station_id)["running"] == "0.2.0"
    assert wait_until(lambda: last_report(reports, b.station_id).get("why") == "cohort", 30), b.log()
    tracker = RolloutTracker("0.2.0", 1)
    for topic, payload in reports.received():
        tracker.observe(topic, json.dumps(payload).encode())
    fleet_ids = [a.station_id, b.station_id]
    assert tracker.status(fleet_ids)["installed"] == 1
    assert tracker.next_percent(fleet_ids) == 10
    _publish(mosquitto, good, sr.reroll(good, hq.role_keys["software"], percent=100))
    assert wait_until(lambda: last_report(reports, b.station_id).get("state") == "installed", 120), b.log()
    assert a.started() == ["0.1.0", "0.2.0"] and b.started() == ["0.1.0", "0.2.0"]
    for s in stations:
        assert s.board.firmware_version == 2 and s.board.boots == ["normal", "trial"], s.board.boots

    # 0.3.0's agent exits at start: rolled back within the health window, twice, then parked.
    broken = tmp_path / "release-0.3.0"
    sr.build(broken, "0.3.0", 3, [releases["0.3.0"]], percent=100)
    _publish(mosquitto, broken, sr.sign(broken, hq.role_keys["software"]))
    for s in stations:
        def parked(s: SimStation = s) -> bool:
            last = last_report(reports, s.station_id).get("last") or {}
            return bool(last.get("parked")) and last.get("version") == "0.3.0"
        assert wait_until(parked, 180), s.log()
        last = last_report(reports, s.station_id)["last"]
        assert last["event"] == "rolled_back" and "did not become healthy" in last["reason"]
        assert s.started()[-4:] == ["0.3.0", "0.2.0", "0.3.0", "0.2.0"], s.started()
        starts = s.supervisor.starts
        for i, start in enumerate(starts[:-1]):
            if start.release == "0.3.0":  # it died at start; the old release is back within the window
                assert start.exit_code not in (None, 0) and starts[i + 1].release == "0.2.0", starts
                assert starts[i + 1].started - start.ended < HEALTH_WINDOW_S, starts
        assert s.current() == "0.2.0"
    time.sleep(2 * HEALTH_WINDOW_S)
    assert all(s.started()[-1] == "0.2.0" and s.current() == "0.2.0" for s in stations)

    # 0.4.0's firmware never says hello: old firmware back, relays never closed, agent back.
    mute = tmp_path / "release-0.4.0"
    sr.build(mute, "0.4.0", 4, [releases["0.4.0"]], percent=100,
             firmware=firmware_files(3, say_hello=False, into=tmp_path), firmware_version=3)
    _publish(mosquitto, mute, sr.sign(mute, hq.role_keys["software"]))
    for s in stations:
        def firmware_refused(s: SimStation = s) -> bool:  # twice, so 0.4.0 is parked
            last = last_report(reports, s.station_id).get("last") or {}
            return last.get("version") == "0.4.0" and last.get("event") == "rolled_back" and bool(last.get("parked"))
        assert wait_until(firmware_refused, 240), s.log()
        reason = last_report(reports, s.station_id)["last"]["reason"]
        assert "did not say hello" in reason and "old firmware 2 is back" in reason, reason
        assert s.board.boots[2:].count("trial") == 2 and s.board.firmware_version == 2, s.board.boots
        assert s.started()[-4:] == ["0.4.0", "0.2.0", "0.4.0", "0.2.0"], s.started()
    assert wait_until(lambda: all(s.current() == "0.2.0" for s in stations), 60)

    # Refused: a non-`software` key, an old version, a tampered chunk.
    impostor = tmp_path / "release-0.5.0-impostor"
    sr.build(impostor, "0.5.0", 5, [releases["0.5.0"]], percent=100)
    _publish(mosquitto, impostor, sr.sign(impostor, hq.role_keys["allowlist"]))
    assert_rejected(reports, stations, "unknown key")
    old = tmp_path / "release-0.1.0"
    _publish(mosquitto, old, (old / "manifest.json").read_bytes())
    assert_rejected(reports, stations, "rollback")
    tampered = tmp_path / "release-0.5.0"
    sr.build(tampered, "0.5.0", 5, [releases["0.5.0"]], percent=100)
    _publish(mosquitto, tampered, sr.sign(tampered, hq.role_keys["software"]), tamper=True)
    assert_rejected(reports, stations, "chunk digest mismatch")
    assert all(s.current() == "0.2.0" and s.started()[-1] == "0.2.0" for s in stations)
    assert all(not s.board.relay_ever_closed for s in stations)
    for _, report in reports.received():
        validate("update", report)


def assert_rejected(reports: MqttRecorder, stations: list[SimStation], check: str) -> None:
    for s in stations:
        def refused(s: SimStation = s) -> bool:
            return last_report(reports, s.station_id).get("check") == check
        assert wait_until(refused, 60), (last_report(reports, s.station_id), s.log())
