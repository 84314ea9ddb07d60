"""Relay-board firmware (Raspberry Pi Pico, MicroPython): pins, UART and watchdog around
board_core.BoardCore, which holds the safety logic.

On the board, boot.py / main.py runs `main()`. On CPython the same file runs against
`simulators/machine_stub.py`, passed in as `machine` (`spbu sim relay-board`).

Wiring (per fuelling point i): relay output RELAY_PINS[i] (high = relay closed = pump
authorised), pulser input PULSER_PINS[i] (falling edge per pulse), nozzle switch
NOZZLE_PINS[i] (low = nozzle lifted). E-stop loop on ESTOP_PIN is normally closed to
ground: high means pressed *or a cut wire*, both stop everything. RESET_PIN is the
technician's local reset button (low = pressed). UART0 on GP0/GP1 to the Pi.

MicroPython-compatible subset; time via time.ticks_ms folded into a counter that does not
wrap, because BoardCore compares times by subtraction.
"""

import time

from hal.firmware.board_core import BoardCore
from hal.firmware.boot_guard import OsFs
from hal.firmware.fw_update import FlashUpdate

RELAY_PINS = (2, 3, 4, 5)
PULSER_PINS = (6, 7, 8, 9)
NOZZLE_PINS = (10, 11, 12, 13)
ESTOP_PIN = 14
RESET_PIN = 15
UART_ID = 0
BAUD = 115200
WATCHDOG_MS = 750  # heartbeat dead-man (protocol level)
HW_WDT_MS = 2000  # hardware watchdog: a hung loop resets the chip, relays off at boot


class Firmware:
    def __init__(self, machine, channels: int = 2, boot_id: int = 0, clock=None,  # type: ignore[no-untyped-def]
                 core=None, watchdog_ms: int = WATCHDOG_MS, fs: OsFs | None = None) -> None:
        # Relays first: every output driven low before anything else can go wrong.
        self.relays = [machine.Pin(RELAY_PINS[i], machine.Pin.OUT, value=0) for i in range(channels)]
        self.machine = machine
        self.clock = clock or time
        updater = FlashUpdate(fs) if fs is not None else None  # firmware updates over the UART
        self.core = core or BoardCore(channels, watchdog_ms=watchdog_ms, updater=updater)
        self.counts = [0] * channels  # pulses counted in the interrupt, not yet fed to the core
        self.cut_at = [0] * channels  # pulses left before the relay must open (0: relay open)
        self.pulsers = []
        for i in range(channels):
            pin = machine.Pin(PULSER_PINS[i], machine.Pin.IN, machine.Pin.PULL_UP)
            pin.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._pulse_handler(i))
            self.pulsers.append(pin)
        self.nozzles = [machine.Pin(NOZZLE_PINS[i], machine.Pin.IN, machine.Pin.PULL_UP)
                        for i in range(channels)]
        self.estop = machine.Pin(ESTOP_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
        self.reset = machine.Pin(RESET_PIN, machine.Pin.IN, machine.Pin.PULL_UP)
        self.uart = machine.UART(UART_ID, baudrate=BAUD)
        self.wdt = machine.WDT(timeout=HW_WDT_MS)
        self._last_ticks = self.clock.ticks_ms()
        self.now = 0
        self.core.boot(self.now, boot_id)

    def _pulse_handler(self, index: int):  # type: ignore[no-untyped-def]
        def handler(pin):  # type: ignore[no-untyped-def]
            # Interrupt context: integers only, no allocation. The preset is cut here, on
            # the pulse itself, not on the next loop pass.
            self.counts[index] += 1
            if self.cut_at[index] > 0:
                self.cut_at[index] -= 1
                if self.cut_at[index] == 0:
                    self.relays[index].value(0)

        return handler

    def _take_counts(self) -> list:  # type: ignore[type-arg]
        state = self.machine.disable_irq()
        counts = self.counts[:]
        for i in range(len(counts)):
            self.counts[i] = 0
        self.machine.enable_irq(state)
        return counts

    def step(self) -> None:
        ticks = self.clock.ticks_ms()
        self.now += self.clock.ticks_diff(ticks, self._last_ticks)
        self._last_ticks = ticks
        now = self.now
        data = self.uart.read()
        if data:
            self.core.feed(data, now)
        for i, n in enumerate(self._take_counts()):
            for _ in range(n):
                self.core.pulse(i, now)
        for i in range(len(self.nozzles)):
            self.core.nozzle(i, self.nozzles[i].value() == 0, now)
        if self.estop.value() == 1 and not self.core.estop_latched:
            self.core.estop(now)
        if self.reset.value() == 0 and self.estop.value() == 0:
            self.core.local_reset()
        self.core.tick(now)
        self._apply_relays()
        out = self.core.take_output()
        if out:
            self.uart.write(out)
        self.wdt.feed()
        if self.core.reset_requested():
            self.uart.write(self.core.take_output())
            self.machine.reset()  # the boot guard runs the new firmware on trial

    def _apply_relays(self) -> None:
        for i in range(len(self.relays)):
            ch = self.core.channels[i]
            state = self.machine.disable_irq()
            closed = self.core.relay(i)
            if closed:
                # Arm the interrupt-side cut with the pulses left to the preset.
                left = ch.preset - ch.pulses - self.counts[i]
                if left <= 0:
                    closed = False
                    self.cut_at[i] = 0
                else:
                    self.cut_at[i] = left
            else:
                self.cut_at[i] = 0
            if self.relays[i].value() != (1 if closed else 0):
                self.relays[i].value(1 if closed else 0)
            self.machine.enable_irq(state)

    def run(self) -> None:
        while True:
            self.step()
            self.clock.sleep_ms(1)


def main() -> None:
    """boot.py runs hal.firmware.boot_guard.boot(machine, OsFs(os)) first, then this."""
    import os

    import machine  # type: ignore[import-not-found]

    # The stubs call ticks values opaque; on the port they are small ints, and the
    # microseconds since power-on are the boot id's only entropy (no os.urandom in the subset).
    boot_id = time.ticks_us() & 0xFFFFFFFF  # type: ignore[attr-defined,operator]
    Firmware(machine, channels=len(RELAY_PINS), boot_id=boot_id,
             fs=OsFs(os)).run()
