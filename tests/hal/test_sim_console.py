"""Technicians rehearse on the simulators: `spbu sim dart` on a pty driven by keyboard
commands (lift a given nozzle, kill a pump), and the relay-board simulator's E-stop from
the keyboard; bad commands are explained and change nothing."""

from __future__ import annotations

import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hal.dart_pump import DartPumps
from hal.firmware import main as firmware
from hal.relay_board import NozzleChange, PumpOnline
from simulators.console import execute
from simulators.dart_pump import DartPumpSim
from simulators.relay_board import RelayBoardSim

ROOT = Path(__file__).resolve().parents[2]


def test_console_commands_act_and_bad_ones_change_nothing() -> None:
    line = DartPumpSim(pumps=2, nozzles=2)
    try:
        assert execute(line, "lift 1 2").startswith("ok")
        assert line.pumps[1].lifted == 2 and line.pumps[1].disp.nozzle_up
        assert execute(line, "hang 1").startswith("ok") and not line.pumps[1].disp.nozzle_up
        assert execute(line, "dead 0").startswith("ok") and line.pumps[0].dead
        assert execute(line, "alive 0").startswith("ok") and not line.pumps[0].dead
        for bad, answer in [("lift", "needs 1"), ("lift x", "not a number"), ("lift 7", "no such channel"),
                            ("lift 0 9", "nozzles 1..2"), ("fly 1", "unknown command"), ("estop", "not available")]:
            assert answer in execute(line, bad), bad
        assert not any(p.disp.nozzle_up or p.dead for p in line.pumps)
        assert "channel 1 (pump 51)" in execute(line, "status")
    finally:
        line.device.close()


def test_relay_board_estop_from_the_keyboard() -> None:
    board = RelayBoardSim(channels=1)
    board.start()
    try:
        assert execute(board, "estop").startswith("ok")
        assert board.machine.pins[firmware.ESTOP_PIN].value() == 1  # the E-stop input is pressed
        assert "released" in execute(board, "release")
        assert board.machine.pins[firmware.ESTOP_PIN].value() == 0
        assert "argument" in execute(board, "lift 0 2")  # one nozzle per channel: explained, nothing done
    finally:
        board.close()


@pytest.mark.integration
def test_spbu_sim_dart_on_a_pty_with_keyboard_commands() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", "dart", "--pumps", "2", "--nozzles", "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    events: queue.Queue[Any] = queue.Queue()
    driver: DartPumps | None = None
    try:
        first = proc.stdout.readline()
        assert first.startswith("DART line on /dev/"), first
        driver = DartPumps(first.split()[3].rstrip(":"), events.put, channels=2, nozzles=(2, 2))
        driver.start()

        def wait_for(kind: type, test: Any, seconds: float = 8) -> Any:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                assert driver is not None
                driver.keep_alive()
                try:
                    event = events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(event, kind) and test(event):
                    return event
            raise AssertionError(f"no {kind.__name__}")

        time.sleep(0.5)
        proc.stdin.write("lift 1 2\n")
        proc.stdin.flush()
        lifted = wait_for(NozzleChange, lambda e: e.channel == 1 and e.up)
        assert lifted.nozzle == 2
        proc.stdin.write("dead 0\n")
        proc.stdin.flush()
        wait_for(PumpOnline, lambda e: e.channel == 0 and not e.online)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        if driver is not None:
            driver.close()
        if proc.poll() is None:
            proc.kill()
