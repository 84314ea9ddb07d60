"""hal/pump_select.py: the `[relay_board] kind` opens the matching controller, each on
its real transport (a pty for the relay board and the DART line, mock GPIO pins), and
the technician's dead-man switch (`hold_heartbeats`) really silences the agent."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from hal.dart_pump import DartPumps
from hal.gpio_relay import GpioRelayBoard
from hal.pump_select import KINDS, PumpLine, open_pump_controller
from hal.relay_board import BoardEnd, BoardHello, BoardLink, RelayBoard
from simulators.dart_pump import DartPumpSim
from simulators.relay_board import RelayBoardSim
from tests.helpers import wait_for, wait_until


def test_unknown_kind_is_refused_before_any_port_is_opened() -> None:
    with pytest.raises(ValueError, match="unknown pump controller kind 'rs485'"):
        open_pump_controller("rs485", [PumpLine("/dev/null", (0,))], lambda e: None, baudrate=9600)
    assert KINDS == ("uart", "dart", "gpio")


@pytest.mark.integration
def test_uart_kind_is_the_relay_board_and_holding_heartbeats_drops_the_relay() -> None:
    sim = RelayBoardSim(channels=1, flow_lps=20.0)
    events: queue.Queue[Any] = queue.Queue()
    board = open_pump_controller("uart", [PumpLine(sim.path, (0,))], events.put, baudrate=115200)
    assert isinstance(board, RelayBoard) and board.port_name == sim.path
    board.start()
    try:
        wait_for(events, lambda e: isinstance(e, BoardLink) and e.connected)
        sim.start()
        wait_for(events, lambda e: isinstance(e, BoardHello))
        time.sleep(0.3)
        board.keep_alive()
        board.authorize(0, 5, preset_pulses=100_000)
        assert wait_until(lambda: sim.relay_closed(0))
        board.hold_heartbeats(True)
        end = wait_for(events, lambda e: isinstance(e, BoardEnd), timeout_s=5.0)
        assert end.reason == "heartbeat_lost" and not sim.relay_closed(0)
        board.hold_heartbeats(False)
    finally:
        board.close()
        sim.close()


@pytest.mark.integration
def test_dart_kind_is_the_dart_line_driver() -> None:
    line = DartPumpSim(pumps=2)
    line.start()
    events: queue.Queue[Any] = queue.Queue()
    board = open_pump_controller("dart", [PumpLine(line.path, (0, 1), (1, 1))], events.put, baudrate=9600)
    assert isinstance(board, DartPumps) and board.port_name == line.path and board.totals_required
    board.start()
    try:
        wait_for(events, lambda e: isinstance(e, BoardLink) and e.connected, timeout_s=5.0)
    finally:
        board.close()
        line.close()


@pytest.mark.integration
def test_two_relay_boards_are_one_controller_with_line_keys() -> None:
    from hal.board_group import BoardGroup

    first, second = RelayBoardSim(channels=1), RelayBoardSim(channels=1)
    events: queue.Queue[Any] = queue.Queue()
    group = open_pump_controller("uart", [PumpLine(first.path, (0,)), PumpLine(second.path, (0,))], events.put,
                                 baudrate=115200)
    assert isinstance(group, BoardGroup) and len(group.lines) == 2
    group.start()
    try:
        wait_for(events, lambda e: isinstance(e, BoardLink) and e.connected)
        assert all(isinstance(line, RelayBoard) for line in group.lines)
        assert {line.port_name for line in group.lines if isinstance(line, RelayBoard)} == {first.path, second.path}
    finally:
        group.close()
        first.close()
        second.close()


def test_no_line_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        open_pump_controller("uart", [], lambda e: None, baudrate=115200)


def test_gpio_kind_drives_the_pins_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", factory)
    board = open_pump_controller("gpio", [PumpLine("gpio", (0,))], lambda e: None, baudrate=0,
                                 gpio_pins=(17, 27, 22, None), active_high=True)
    try:
        assert isinstance(board, GpioRelayBoard)
        assert factory.pin(17).state == 0  # relay off at start
    finally:
        board.close()
