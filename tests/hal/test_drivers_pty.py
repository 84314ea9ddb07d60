"""Drivers against simulated devices over real pseudo-terminals, as they would open
/dev/ttyACM0: the scanner driver, and the relay-board driver with the board's dead-man."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

from hal.relay_board import BoardEnd, BoardHello, BoardLink, NozzleChange, RelayBoard
from hal.scanner import ScanError, ScannerState, ScanRead, SerialScanner
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim
from tests.helpers import wait_for, wait_until

pytestmark = pytest.mark.integration






def test_serial_scanner_reads_codes_and_reports_garbage() -> None:
    sim = ScannerSim(suffix=b"\r\n")
    events: queue.Queue[Any] = queue.Queue()
    scanner = SerialScanner(sim.path, events.put)
    scanner.start()
    try:
        wait_for(events, lambda e: isinstance(e, ScannerState) and e.connected)
        sim.scan("SPBU1:123456789")
        read = wait_for(events, lambda e: isinstance(e, ScanRead))
        assert read == ScanRead("SPBU1:123456789", "]Q1")
        sim.device.write(b"\x01\x02\xff\r\n")
        assert wait_for(events, lambda e: isinstance(e, ScanError)) == ScanError("not_text")
        sim.device.write(b"SPBU1:")  # a read split across USB packets
        time.sleep(0.1)
        sim.device.write(b"42\r\n")
        assert wait_for(events, lambda e: isinstance(e, ScanRead)).text == "SPBU1:42"
    finally:
        scanner.close()
        sim.close()


def test_relay_board_authorises_meters_and_ends_on_nozzle_hang() -> None:
    board = RelayBoardSim(channels=2, flow_lps=20.0)
    events: queue.Queue[Any] = queue.Queue()
    driver = RelayBoard(board.path, events.put)
    driver.start()
    try:
        wait_for(events, lambda e: isinstance(e, BoardLink) and e.connected)
        board.start()  # power on with the host already listening: it announces its boot
        hello = wait_for(events, lambda e: isinstance(e, BoardHello))
        assert hello.channels == 2
        time.sleep(0.3)  # heartbeats reach the board before it accepts an authorisation
        driver.keep_alive()
        driver.authorize(1, 77, preset_pulses=10_000)
        assert wait_until(lambda: board.relay_closed(1))
        assert not board.relay_closed(0)
        board.lift_nozzle(1)
        wait_for(events, lambda e: isinstance(e, NozzleChange) and e.up)
        for _ in range(30):
            driver.keep_alive()
            time.sleep(0.01)
        board.hang_nozzle(1)
        end = wait_for(events, lambda e: isinstance(e, BoardEnd))
        assert end.channel == 1 and end.auth_id == 77 and end.reason == "nozzle_hung"
        assert end.pulses > 0
        assert end.pulses * 10 == board.totaliser_ml(1)
    finally:
        driver.close()
        board.close()


def test_relay_drops_by_itself_when_the_agent_stops_saying_it_is_alive() -> None:
    board = RelayBoardSim(channels=1, flow_lps=1.0, watchdog_ms=750)
    board.start()
    events: queue.Queue[Any] = queue.Queue()
    driver = RelayBoard(board.path, events.put, alive_window_s=0.5)
    driver.start()
    try:
        wait_for(events, lambda e: isinstance(e, BoardLink) and e.connected)
        time.sleep(0.3)
        driver.keep_alive()
        driver.authorize(0, 5, preset_pulses=100_000)
        assert wait_until(lambda: board.relay_closed(0))
        board.lift_nozzle(0)
        hung_at = time.monotonic()  # the agent's loop stops calling keep_alive() here
        assert wait_until(lambda: not board.relay_closed(0), timeout_s=3.0)
        dropped_after = time.monotonic() - hung_at
        end = wait_for(events, lambda e: isinstance(e, BoardEnd))
        assert end.reason == "heartbeat_lost"
        # alive window 0.5 s + board watchdog 0.75 s, with scheduling slack
        assert dropped_after < 2.5
    finally:
        driver.close()
        board.close()
