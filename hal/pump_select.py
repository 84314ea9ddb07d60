"""Which pump controller the station's `[relay_board] kind` names, on how many lines:

  uart   relay boards (MicroPython firmware in hal/firmware/) on serial ports
  dart   Wayne DART pumps on RS-485 lines (hal/dart_pump.py)
  gpio   one pump on the Pi's own header through gpiozero (the [pi] extra)

Several ports (relay boards or DART lines) become one controller (hal/board_group.py)
whose channel keys are line * 256 + channel. Every kind answers the same PumpController
interface, so the station cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from hal.relay_board import BoardEvent, PumpController, RelayBoard

KINDS = ("uart", "dart", "gpio")
Sink = Callable[[BoardEvent], None]


class PumpLine(NamedTuple):
    """One serial line: its port, the channels in use on it, and (DART) the logical
    nozzles of each pump in channel order."""

    port: str
    channels: tuple[int, ...]
    nozzles: tuple[int, ...] = ()


def open_pump_controller(kind: str, lines: Sequence[PumpLine], on_event: Sink, *, baudrate: int,
                         gpio_pins: tuple[int, int, int, int | None] | None = None,
                         active_high: bool = True) -> PumpController:
    if kind not in KINDS:
        raise ValueError(f"unknown pump controller kind {kind!r} (one of {', '.join(KINDS)})")
    if not lines:
        raise ValueError("a pump controller needs at least one line")
    if kind == "gpio" and gpio_pins is not None:
        from hal.gpio_relay import GpioRelayBoard  # gpiozero: the [pi] extra

        relay, pulser, nozzle, estop = gpio_pins
        return GpioRelayBoard(on_event, relay, pulser, nozzle, estop, active_high=active_high)
    if len(lines) == 1:
        return _open_line(kind, lines[0], on_event, baudrate)
    from hal.board_group import BoardGroup  # several relay boards or DART lines

    return BoardGroup([_line_maker(kind, line, baudrate) for line in lines], [line.channels for line in lines],
                      on_event)


def _line_maker(kind: str, line: PumpLine, baudrate: int) -> Callable[[Sink], PumpController]:
    return lambda sink: _open_line(kind, line, sink, baudrate)


def _open_line(kind: str, line: PumpLine, sink: Sink, baudrate: int) -> PumpController:
    if kind == "dart":
        from hal.dart_pump import DartPumps

        return DartPumps(line.port, sink, channels=len(line.channels), baudrate=baudrate, nozzles=line.nozzles)
    return RelayBoard(line.port, sink, baudrate)
