"""Direct GPIO relay backend on gpiozero's mock pins: the firmware's safety logic drives a
relay on the Pi's own header, with the same protocol and events as the relay board."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from hal.gpio_relay import GpioRelayBoard
from hal.relay_board import BoardEnd, BoardHello, NozzleChange
from tests.helpers import wait_for, wait_until

RELAY, PULSER, NOZZLE = 17, 27, 22






class Rig:
    def __init__(self, active_high: bool = True) -> None:
        self.factory = MockFactory()
        self.events: queue.Queue[Any] = queue.Queue()
        self.board = GpioRelayBoard(self.events.put, RELAY, PULSER, NOZZLE, active_high=active_high,
                                    pin_factory=self.factory, alive_window_s=0.5)
        self.alive = True

    def relay_on(self, active_high: bool = True) -> bool:
        state = bool(self.factory.pin(RELAY).state)
        return state if active_high else not state

    def pulses(self, count: int) -> None:
        pin = self.factory.pin(PULSER)
        for _ in range(count):
            pin.drive_low()
            pin.drive_high()

    def keep_alive_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.board.keep_alive()
            time.sleep(0.01)


def alive_and(rig: Rig, check: Callable[[], bool]) -> bool:
    rig.board.keep_alive()
    return check()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    r.board.start()
    yield r
    r.board.close()


def test_relay_off_at_start_then_a_preset_fill_stops_on_the_exact_pulse(rig: Rig) -> None:
    assert not rig.relay_on()
    wait_for(rig.events, lambda e: isinstance(e, BoardHello))
    rig.keep_alive_for(0.3)
    rig.board.authorize(0, 11, 250)
    assert wait_until(lambda: alive_and(rig, rig.relay_on))
    rig.factory.pin(NOZZLE).drive_low()  # nozzle lifted
    assert wait_for(rig.events, lambda e: isinstance(e, NozzleChange)).up
    rig.pulses(249)
    rig.board.keep_alive()
    assert rig.relay_on()
    rig.pulses(1)
    assert not rig.relay_on(), "the 250th pulse must cut the relay at once"
    rig.keep_alive_for(0.5)
    end = wait_for(rig.events, lambda e: isinstance(e, BoardEnd))
    assert (end.auth_id, end.pulses, end.reason) == (11, 250, "preset_reached")


def test_relay_drops_when_the_agent_loop_stops_keeping_alive(rig: Rig) -> None:
    wait_for(rig.events, lambda e: isinstance(e, BoardHello))
    rig.keep_alive_for(0.3)
    rig.board.authorize(0, 12, 100_000)
    assert wait_until(lambda: alive_and(rig, rig.relay_on))
    stopped = time.monotonic()
    assert wait_until(lambda: not rig.relay_on(), 3.0)
    assert time.monotonic() - stopped < 2.5  # alive window 0.5 s + dead-man 0.75 s + slack
    assert wait_for(rig.events, lambda e: isinstance(e, BoardEnd)).reason == "heartbeat_lost"


def test_active_low_relay_module_is_off_at_start_and_on_when_authorised() -> None:
    r = Rig(active_high=False)
    r.board.start()
    try:
        assert r.factory.pin(RELAY).state, "active-low: off means the pin is high"
        wait_for(r.events, lambda e: isinstance(e, BoardHello))
        r.keep_alive_for(0.3)
        r.board.authorize(0, 13, 100)
        assert wait_until(lambda: alive_and(r, lambda: not r.factory.pin(RELAY).state))
    finally:
        r.board.close()


@pytest.mark.integration
def test_station_fuels_through_a_gpio_relay(mosquitto: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole agent with `kind = "gpio"`: scan over a pty scanner, relay on a (mock) GPIO
    pin, litres from pulser edges, the transaction at headquarters."""
    from gpiozero import Device

    from agent.config import PumpConfig, StationConfig
    from agent.station import Station
    from simulators.hq import HeadquartersSim, synthetic_registry
    from simulators.scanner import ScannerSim

    factory = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", factory)
    registry = synthetic_registry(200)
    car = next(e for e in registry if e.category == "private_car" and e.products == 0x01 and e.status == "active")
    hq = HeadquartersSim(mosquitto.host, mosquitto.port, registry)
    hq.start()
    hq.publish_documents()
    scanner = ScannerSim()
    config = StationConfig(
        station_id="12.345.99", zone="WIT", data_dir=tmp_path / "data", broker_host=mosquitto.host,
        broker_port=mosquitto.port, trusted_keys={hq.key_id: hq.public_key_hex}, relay_board_port="gpio",
        pumps=(PumpConfig(1, "pertalite", 0, scanner.path),), relay_board_kind="gpio",
        relay_gpio=(RELAY, PULSER, NOZZLE, None))
    station = Station(config, on_line=lambda line: None)
    import threading

    stop = threading.Event()
    station.start()
    runner = threading.Thread(target=station.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: station.docs.allowlist is not None and station.board_connected, 10)
        time.sleep(0.3)
        scanner.scan(hq.issue_token(car.vehicle_id))
        assert wait_until(lambda: bool(factory.pin(RELAY).state), 5)
        factory.pin(NOZZLE).drive_low()
        time.sleep(0.1)
        for _ in range(1234):  # 12.34 L at 100 pulses per litre
            factory.pin(PULSER).drive_low()
            factory.pin(PULSER).drive_high()
        factory.pin(NOZZLE).drive_high()
        assert wait_until(lambda: len(hq.transactions()) == 1, 10)
        tx = hq.transactions()[0]
        assert tx["dispensed_ml"] == 12_340 and tx["end_reason"] == "nozzle_hung"
        assert not factory.pin(RELAY).state
    finally:
        stop.set()
        runner.join(5)
        station.close()
        hq.close()
        scanner.close()
