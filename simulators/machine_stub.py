"""A stand-in for MicroPython's `machine` module on CPython, binding Pin, UART and WDT to
simulated hardware, so the relay-board firmware (hal/firmware/main.py) runs unchanged in
the simulator. One FakeMachine per simulated board."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from typing import Any

from hal.ticks import CPythonTicks

CPythonClock = CPythonTicks  # the name the simulator and benchmarks use


class StubPin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, pin_id: int, mode: int = 0, pull: int | None = None, value: int | None = None) -> None:
        self.id = pin_id
        self.mode = mode
        # An input with a pull-up reads 1 until something pulls it low.
        self._level = value if value is not None else (1 if pull == self.PULL_UP else 0)
        self._handler: Callable[[StubPin], None] | None = None

    def value(self, level: int | None = None) -> int:
        if level is not None:
            self._level = 1 if level else 0
        return self._level

    def irq(self, trigger: int = 0, handler: Callable[[StubPin], None] | None = None) -> None:
        self._handler = handler

    # --- the simulated world's side -------------------------------------------------------

    def drive(self, level: int) -> None:
        """Set an input's level as the wiring would."""
        self._level = level

    def falling_edge(self) -> None:
        """One pulse from a pulser: the interrupt handler runs as on the chip."""
        if self._handler is not None:
            self._handler(self)


class StubUART:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, nbytes: int = -1) -> bytes | None:
        ready, _, _ = select.select([self._fd], [], [], 0)
        if not ready:
            return None
        try:
            return os.read(self._fd, 4096 if nbytes < 0 else nbytes) or None
        except (BlockingIOError, OSError):
            return None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                select.select([], [self._fd], [], 0.05)
        return len(data)


class StubWDT:
    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.last_feed = time.monotonic()

    def feed(self) -> None:
        self.last_feed = time.monotonic()

    def expired(self) -> bool:
        return (time.monotonic() - self.last_feed) * 1000 > self.timeout


class BoardReset(Exception):
    """machine.reset(): the simulated chip restarts (the simulator boots the firmware again)."""


class StubTimer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, registry: list[StubTimer]) -> None:
        self._registry = registry
        self.deadline = 0.0
        self.period_ms = 0
        self.mode = self.ONE_SHOT
        self.callback: Callable[[StubTimer], None] | None = None

    def init(self, mode: int = 0, period: int = 1000, callback: Callable[[StubTimer], None] | None = None) -> None:
        self.mode, self.period_ms, self.callback = mode, period, callback
        self.deadline = time.monotonic() + period / 1000
        if self not in self._registry:
            self._registry.append(self)

    def deinit(self) -> None:
        if self in self._registry:
            self._registry.remove(self)


class FakeMachine:
    def __init__(self, uart_fd: int) -> None:
        self.pins: dict[int, StubPin] = {}
        self.uart_fd = uart_fd
        self.wdt: StubWDT | None = None
        self.timers: list[StubTimer] = []
        registry = self.pins
        timers = self.timers

        class Timer(StubTimer):
            def __init__(self, timer_id: int = -1) -> None:
                super().__init__(timers)

        self.Timer = Timer

        class Pin(StubPin):
            def __init__(self, pin_id: int, mode: int = 0, pull: int | None = None,
                         value: int | None = None) -> None:
                super().__init__(pin_id, mode, pull, value)
                registry[pin_id] = self

        self.Pin = Pin

    def UART(self, uart_id: int, baudrate: int = 115200, **kwargs: Any) -> StubUART:
        return StubUART(self.uart_fd)

    def WDT(self, timeout: int = 5000, **kwargs: Any) -> StubWDT:
        self.wdt = StubWDT(timeout)
        return self.wdt

    def disable_irq(self) -> int:
        return 0  # interrupts are calls made from the simulator's own thread

    def enable_irq(self, state: int) -> None:
        pass

    def reset(self) -> None:
        raise BoardReset()

    def run_timers(self) -> None:
        """Fire the timers that are due, as the chip's hardware timers would (BoardReset may
        come out of a callback)."""
        now = time.monotonic()
        for timer in list(self.timers):
            if now >= timer.deadline and timer.callback is not None:
                if timer.mode == StubTimer.ONE_SHOT:
                    timer.deinit()
                else:
                    timer.deadline = now + timer.period_ms / 1000
                timer.callback(timer)
