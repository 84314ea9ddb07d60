"""`spbu agent run` as a real process against the private broker and pty devices: it is
killed mid-fill (SIGKILL, like a power cut of the Pi), the board drops the relay by
itself, and the restarted agent records the litres that flowed; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.config import PumpConfig, StationConfig, render_config
from simulators.broker import MosquittoBroker
from simulators.hq import HeadquartersSim, synthetic_registry
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
STATION = "12.345.67"




def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        command = [sys.executable, "-m", "agent", "-v", "agent", "run", "--config", str(config)]
        return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)


def test_agent_killed_mid_fill_then_restarted_records_every_litre(mosquitto: MosquittoBroker,
                                                                   tmp_path: Path) -> None:
    registry = synthetic_registry(300)
    car = next(e for e in registry if e.category == "private_car" and e.products == 0x01
               and e.status == "active")
    hq = HeadquartersSim(mosquitto.host, mosquitto.port, registry)
    hq.start()
    hq.publish_documents()
    board = RelayBoardSim(channels=1, flow_lps=5.0)
    board.start()
    scanner = ScannerSim()
    states: queue.Queue[dict[str, Any]] = queue.Queue()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-state-watcher")
    watcher.on_message = lambda c, u, m: states.put(json.loads(m.payload))
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe(topics.state(STATION), qos=1)
    watcher.loop_start()
    config = StationConfig(
        station_id=STATION, zone="WITA", data_dir=tmp_path / "data", broker_host=mosquitto.host,
        broker_port=mosquitto.port, trusted_keys={hq.key_id: hq.public_key_hex},
        relay_board_port=board.path, pumps=(PumpConfig(1, "pertalite", 0, scanner.path),),
    )
    config_path = tmp_path / "station.toml"
    config_path.write_text(render_config(config))
    log = tmp_path / "agent.log"
    agent = start_agent(config_path, log)
    try:
        def online() -> bool:
            try:
                return states.get(timeout=0.1).get("state") == "online"
            except queue.Empty:
                return False

        assert wait_until(online, 20), log.read_text()
        start_total = board.totaliser_ml(0)
        time.sleep(0.5)  # the retained list reaches the agent right after it connects
        scanner.scan(hq.issue_token(car.vehicle_id))
        assert wait_until(lambda: board.relay_closed(0), 10), log.read_text()
        board.lift_nozzle(0)
        assert wait_until(lambda: board.totaliser_ml(0) - start_total > 2000, 10)

        agent.send_signal(signal.SIGKILL)  # power cut of the Pi, mid-fill
        agent.wait(5)
        killed_at = time.monotonic()
        # Fail safe: with nobody feeding its dead-man, the board opens the relay by itself.
        assert wait_until(lambda: not board.relay_closed(0), 5)
        assert time.monotonic() - killed_at < 3.0
        time.sleep(0.5)
        board.hang_nozzle(0)
        flowed = board.totaliser_ml(0) - start_total
        assert flowed > 2000

        agent = start_agent(config_path, log)
        assert wait_until(lambda: len(hq.transactions()) == 1, 30), log.read_text()
        tx = hq.transactions()[0]
        assert tx["dispensed_ml"] == flowed
        assert tx["end_reason"] == "interrupted_by_restart"
        assert tx["final_state"] == "interrupted"
        assert not board.relay_closed(0), "a session must never be re-authorised after a restart"

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        assert wait_until(lambda: any(s.get("state") == "offline" for s in _drain(states)), 5)
    finally:
        if agent.poll() is None:
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(5)
        watcher.loop_stop()
        watcher.disconnect()
        hq.close()
        board.close()
        scanner.close()


def _drain(q: queue.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    while True:
        try:
            items.append(q.get(timeout=0.1))
        except queue.Empty:
            return items
