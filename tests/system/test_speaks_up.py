"""The agent speaks up: one INFO line at start with what it found, one WARNING per device or
broker that does not answer (not one per retry), an INFO when it comes back."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import PumpConfig, StationConfig
from agent.device_watch import DeviceWatch
from agent.station import Station
from agent.trust.signing import key_id, public_key_hex


def test_device_watch_warns_once_and_says_when_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.devices")
    watch = DeviceWatch(started_mono=100.0, grace_s=5.0)
    watch.add("scanner pump 1", "/dev/spbu-scanner-1")
    watch.add("broker", "127.0.0.1:1883")
    watch.tick(103.0)
    assert not caplog.records  # still within the grace period
    for now in (106.0, 107.0, 200.0):
        watch.tick(now)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["scanner pump 1 (/dev/spbu-scanner-1) not found or not answering; retrying",
                        "broker (127.0.0.1:1883) not found or not answering; retrying"]
    caplog.clear()
    watch.seen("broker", True)
    watch.seen("broker", False)
    watch.seen("broker", False)
    watch.seen("broker", True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "broker (127.0.0.1:1883) is back"), ("WARNING", "broker (127.0.0.1:1883) lost; retrying"),
        ("INFO", "broker (127.0.0.1:1883) is back")]
    assert watch.snapshot()["broker"]["connected"] is True
    assert watch.snapshot()["scanner pump 1"]["connected"] is False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_station_with_nothing_plugged_in_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    key = Ed25519PrivateKey.generate().public_key()
    station = Station(StationConfig(
        station_id="34.401.09", zone="WIT", data_dir=tmp_path / "data", broker_host="127.0.0.1",
        broker_port=_free_port(), trusted_keys={key_id(key): public_key_hex(key)},
        relay_board_port=str(tmp_path / "no-relay"), pumps=(PumpConfig(1, "solar", 0, str(tmp_path / "no-scan")),)),
        on_line=lambda line: None)
    station.devices.grace_s = 0.5
    stop = threading.Event()
    station.start()
    loop = threading.Thread(target=station.run, args=(stop,), daemon=True)
    loop.start()
    try:
        time.sleep(7.0)  # past the grace period and a few retries of every driver
    finally:
        stop.set()
        loop.join(5)
        station.close()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    start = [m for level, m in messages if level == "INFO" and m.startswith("station 34.401.09 (WIT)")]
    assert start and "pump controller uart" in start[0] and "broker 127.0.0.1:" in start[0], messages
    warnings = [m for level, m in messages if level == "WARNING" and "not found or not answering" in m]
    assert sorted(w.split(" (")[0] for w in warnings) == ["broker", "pump controller", "scanner pump 1"], warnings
