"""The dispenser model and its injected faults, alone and behind the relay-board firmware."""

from __future__ import annotations

import contextlib
import queue
import time
from typing import Any

import pytest

from hal.relay_board import BoardFault, BoardLink, RelayBoard
from simulators.dispenser import Dispenser, Faults
from simulators.relay_board import RelayBoardSim


def test_flow_ramps_up_to_the_nominal_rate() -> None:
    disp = Dispenser(flow_lps=40 / 60, pulses_per_litre=100, ramp_s=1.0)
    disp.nozzle_up = True
    first = sum(disp.fuel_pulses(0.01, True) for _ in range(10))  # first 0.1 s
    for _ in range(100):
        disp.fuel_pulses(0.01, True)
    steady = sum(disp.fuel_pulses(0.01, True) for _ in range(10))  # 0.1 s at full rate
    assert steady == pytest.approx(6.67, abs=1)
    assert first < steady / 3


def test_valve_needs_nozzle_and_relay_unless_stuck() -> None:
    disp = Dispenser()
    assert disp.fuel_pulses(1.0, True) == 0  # nozzle in its holster
    disp.nozzle_up = True
    assert disp.fuel_pulses(1.0, False) == 0  # relay open
    disp.faults.stuck_valve = True
    assert disp.fuel_pulses(1.0, False) > 0  # welded relay: fuel without authorisation


def test_no_flow_fault() -> None:
    disp = Dispenser(faults=Faults(no_flow=True))
    disp.nozzle_up = True
    assert disp.fuel_pulses(1.0, True) == 0


def test_overrun_after_close_is_bounded() -> None:
    disp = Dispenser(max_overrun_pulses=2, faults=Faults(overrun_pulses=5))
    disp.nozzle_up = True
    disp.flowing = True
    disp.valve_closed()
    extra = 0
    while disp.overrun_pulse():
        extra += 1
    assert 5 <= extra <= 7


def test_pulser_noise_rate() -> None:
    disp = Dispenser(faults=Faults(pulser_noise_hz=50))
    assert sum(disp.noise_pulses(0.01) for _ in range(100)) == 50


@pytest.mark.integration
@pytest.mark.parametrize("faults", [Faults(stuck_valve=True), Faults(pulser_noise_hz=20)],
                         ids=["stuck_valve", "pulser_noise"])
def test_board_reports_pulses_without_authorisation(faults: Faults) -> None:
    board = RelayBoardSim(channels=1, flow_lps=2.0, faults=faults)
    events: queue.Queue[Any] = queue.Queue()
    driver = RelayBoard(board.path, events.put)
    driver.start()
    board.start()
    try:
        deadline = time.monotonic() + 5
        seen: list[Any] = []
        board.lift_nozzle(0)  # nobody authorised anything
        while time.monotonic() < deadline and not any(isinstance(e, BoardFault) for e in seen):
            driver.keep_alive()
            with contextlib.suppress(queue.Empty):
                seen.append(events.get(timeout=0.05))
        assert any(isinstance(e, BoardLink) for e in seen)
        fault = next(e for e in seen if isinstance(e, BoardFault))
        assert fault.channel == 0 and fault.code == 1
        assert not board.relay_closed(0)
    finally:
        driver.close()
        board.close()
