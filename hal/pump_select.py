"""Which pump controller the station's `[relay_board] kind` names:

  uart   the relay board (MicroPython firmware in hal/firmware/) on a serial port
  dart   Wayne DART pumps on an RS-485 line (hal/dart_pump.py)
  gpio   one pump on the Pi's own header through gpiozero (the [pi] extra)

Every kind answers the same PumpController interface, so the station cannot tell them
apart.
"""

from __future__ import annotations

from collections.abc import Callable

from hal.relay_board import BoardEvent, PumpController, RelayBoard

KINDS = ("uart", "dart", "gpio")


def open_pump_controller(kind: str, port: str, on_event: Callable[[BoardEvent], None], *, baudrate: int,
                         channels: int, nozzles: tuple[int, ...] = (),
                         gpio_pins: tuple[int, int, int, int | None] | None = None,
                         active_high: bool = True) -> PumpController:
    if kind not in KINDS:
        raise ValueError(f"unknown pump controller kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "gpio" and gpio_pins is not None:
        from hal.gpio_relay import GpioRelayBoard  # gpiozero: the [pi] extra

        relay, pulser, nozzle, estop = gpio_pins
        return GpioRelayBoard(on_event, relay, pulser, nozzle, estop, active_high=active_high)
    if kind == "dart":
        from hal.dart_pump import DartPumps

        return DartPumps(port, on_event, channels=channels, baudrate=baudrate, nozzles=nozzles)
    return RelayBoard(port, on_event, baudrate)
