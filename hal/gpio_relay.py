"""Direct GPIO relay: one fuelling point wired straight to the Pi's GPIO header, for a
station without a relay board. The relay-board firmware (hal/firmware/main.py) runs here
unchanged, in the agent's process, on a `machine` made of gpiozero devices; the agent
talks to it through the same protocol and driver logic as to a real board.

WARNING: without a relay board nothing outside the Pi enforces the dead-man. A hung agent
loop still drops the relay (heartbeats stop, the firmware's watchdog fires), but if the
agent *process* dies or the Pi resets, a GPIO output can stay where it was. The relay
module must be wired so that it is OFF when the pin floats or is an input (pull-down on
an active-high input, pull-up on an active-low one) and the boot configuration must keep
that pin low (config.txt `gpio=<pin>=op,dl`). Prefer the relay board wherever possible.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, OutputDevice

from hal.firmware import main as firmware
from hal.relay_board import BoardEvent, RelayBoard
from hal.ticks import CPythonTicks


class _MemoryUART:
    def __init__(self) -> None:
        self.rx = bytearray()  # host -> firmware
        self.tx = bytearray()  # firmware -> host
        self.lock = threading.Lock()

    def read(self, nbytes: int = -1) -> bytes | None:
        with self.lock:
            if not self.rx:
                return None
            data = bytes(self.rx)
            self.rx.clear()
            return data

    def write(self, data: bytes) -> int:
        with self.lock:
            self.tx.extend(data)
        return len(data)


class _NoWDT:
    """The Pi has systemd's watchdog; the in-process firmware needs none of its own."""

    def feed(self) -> None:
        pass


class GpioMachine:
    """MicroPython's `machine`, as far as the firmware uses it, on gpiozero devices."""

    def __init__(self, bcm: dict[int, int], active_high: bool, pin_factory: Any = None) -> None:
        self.bcm = bcm  # firmware pin id -> BCM pin number
        self.active_high = active_high
        self.pin_factory = pin_factory
        self.irq_lock = threading.RLock()
        self.uart = _MemoryUART()
        self.devices: list[Any] = []
        machine = self

        class Pin:
            IN = 0
            OUT = 1
            PULL_UP = 1
            IRQ_FALLING = 4

            def __init__(self, pin_id: int, mode: int = 0, pull: int | None = None,
                         value: int | None = None) -> None:
                self._device: Any = None
                self._level = 1 if pull == Pin.PULL_UP else 0  # unwired input: idle level
                if pin_id == firmware.ESTOP_PIN:
                    self._level = 0  # no E-stop wired: the loop counts as closed
                number = machine.bcm.get(pin_id)
                if number is None:
                    return
                if mode == Pin.OUT:
                    self._device = OutputDevice(number, active_high=machine.active_high, initial_value=False,
                                                pin_factory=machine.pin_factory)
                else:
                    self._device = DigitalInputDevice(number, pull_up=pull == Pin.PULL_UP,
                                                      pin_factory=machine.pin_factory)
                machine.devices.append(self._device)

            def value(self, level: int | None = None) -> int:
                if self._device is None:
                    return self._level
                if isinstance(self._device, OutputDevice):
                    if level is not None:
                        self._device.value = bool(level)
                    return 1 if self._device.value else 0
                return 1 if self._device.pin.state else 0  # raw level, as on the chip

            def irq(self, trigger: int = 0, handler: Callable[[Any], None] | None = None) -> None:
                if self._device is None or handler is None:
                    return

                def edge() -> None:
                    with machine.irq_lock:
                        handler(self)

                # pull-up input: "activated" is the falling edge
                self._device.when_activated = edge

        self.Pin = Pin

    def UART(self, uart_id: int, baudrate: int = 115200, **kwargs: Any) -> _MemoryUART:
        return self.uart

    def WDT(self, timeout: int = 5000, **kwargs: Any) -> _NoWDT:
        return _NoWDT()

    def disable_irq(self) -> int:
        self.irq_lock.acquire()
        return 0

    def enable_irq(self, state: int) -> None:
        self.irq_lock.release()

    def close(self) -> None:
        for device in self.devices:
            device.close()


class _InProcessPort:
    """Stands where the serial port thread stands for RelayBoard: runs the firmware loop
    and moves bytes between it and the host-side link."""

    def __init__(self, machine: GpioMachine, on_bytes: Callable[[bytes], None], on_state: Callable[[bool], None],
                 on_idle: Callable[[], None], loop_ms: int = 2) -> None:
        self.machine = machine
        self.firmware = firmware.Firmware(machine, channels=1, clock=CPythonTicks)
        self._on_bytes = on_bytes
        self._on_state = on_state
        self._on_idle = on_idle
        self._loop_s = loop_ms / 1000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpio-relay", daemon=True)
        self.connected = False
        self.port = "gpio"

    def wake(self) -> None:
        """The firmware loop runs every few ms anyway: nothing to wake."""
        self.last_loop = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        for relay in self.firmware.relays:
            relay.value(0)
        self.machine.close()

    def write(self, data: bytes) -> bool:
        with self.machine.uart.lock:
            self.machine.uart.rx.extend(data)
        return True

    def _run(self) -> None:
        self.connected = True
        self._on_state(True)
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            self.firmware.step()
            with self.machine.uart.lock:
                out = bytes(self.machine.uart.tx)
                self.machine.uart.tx.clear()
            if out:
                self._on_bytes(out)
            self._on_idle()
            self._stop.wait(self._loop_s)


class GpioRelayBoard(RelayBoard):
    """RelayBoard's interface and events (channel 0) for a relay on the Pi's own GPIO."""

    def __init__(self, on_event: Callable[[BoardEvent], None], relay_gpio: int, pulser_gpio: int,
                 nozzle_gpio: int, estop_gpio: int | None = None, active_high: bool = True,
                 pin_factory: Any = None, heartbeat_ms: int = 200, alive_window_s: float = 1.0) -> None:
        super().__init__("gpio", on_event, heartbeat_ms=heartbeat_ms, alive_window_s=alive_window_s)
        bcm = {firmware.RELAY_PINS[0]: relay_gpio, firmware.PULSER_PINS[0]: pulser_gpio,
               firmware.NOZZLE_PINS[0]: nozzle_gpio}
        if estop_gpio is not None:
            bcm[firmware.ESTOP_PIN] = estop_gpio
        self.machine = GpioMachine(bcm, active_high, pin_factory)
        self._port = _InProcessPort(self.machine, self._bytes, self._state, self._tick)  # type: ignore[assignment]
