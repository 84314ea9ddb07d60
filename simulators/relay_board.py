"""Relay board plus the dispensers it is wired to, on a pseudo-terminal.

The board *is* the firmware: hal/firmware/main.py runs unchanged against
simulators/machine_stub.py, its UART bound to the pty and its pins to the dispensers.
Each dispenser has a nozzle the simulated customer lifts and hangs, a solenoid valve that
opens only while the board's relay output is high and the nozzle is up, a pulser that
fires the firmware's pin interrupt once per pulse, and its own totaliser: the physical
truth the agent's journal must match.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from hal import relay_proto as rp
from hal.firmware import boot_guard
from hal.firmware import main as firmware
from hal.firmware.board_core import BoardCore
from simulators.dispenser import Dispenser, Faults
from simulators.flash import FlashLoader
from simulators.machine_stub import BoardReset, CPythonClock, FakeMachine
from simulators.pty_device import PtyDevice, SerialDevice


class RecordingBoardCore(BoardCore):
    """The board core plus a record of what it was told, for tests and the crash campaign."""

    def __init__(self, channels: int, watchdog_ms: int) -> None:
        super().__init__(channels, watchdog_ms=watchdog_ms)
        self.accepted: list[tuple[int, int, int]] = []  # (channel, auth id, preset) started
        self.host_hellos = 0

    def _handle(self, mtype: int, values: tuple, now: int) -> None:  # type: ignore[type-arg]
        if mtype == rp.HOST_HELLO:
            self.host_hellos += 1
        super()._handle(mtype, values, now)

    def _authorize(self, index: int, auth_id: int, preset: int, now: int) -> None:
        super()._authorize(index, auth_id, preset, now)
        if 0 <= index < len(self.channels) and self.channels[index].auth_id == auth_id \
                and self.channels[index].relay:
            self.accepted.append((index, auth_id, preset))


class RelayBoardSim:
    def __init__(
        self,
        channels: int,
        flow_lps: float = 0.67,
        pulses_per_litre: int = 100,
        watchdog_ms: int = 750,
        max_overrun_pulses: int = 2,
        seed: int = 1,
        ramp_s: float = 0.0,
        faults: Faults | None = None,
        port: str | None = None,
        flash: Path | None = None,
        trial_ms: int = boot_guard.TRIAL_MS,
    ) -> None:
        if not 1 <= channels <= len(firmware.RELAY_PINS):
            raise ValueError(f"the relay board has 1..{len(firmware.RELAY_PINS)} channels")
        self.device: PtyDevice | SerialDevice = SerialDevice(port) if port else PtyDevice()
        self.machine = FakeMachine(self.device.master)
        self.core = RecordingBoardCore(channels, watchdog_ms=watchdog_ms)
        self.channels = channels
        self.dispensers = [Dispenser(flow_lps, pulses_per_litre, ramp_s, max_overrun_pulses, seed + i,
                                     faults or Faults()) for i in range(channels)]
        self._watchdog_ms = watchdog_ms
        # With `flash`, the firmware runs from that directory (simulators/flash.py) and can
        # be updated over the UART; its boot guard runs first at every (re)boot.
        self.flash = flash
        self.trial_ms = trial_ms
        self.boots: list[str] = []  # boot guard outcome per boot: normal, trial, restored
        self.firmware_version = 0
        self.relay_ever_closed = False
        self.firmware: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-board-sim", daemon=True)
        self._last = self._now()

    @property
    def path(self) -> str:
        return self.device.path

    @staticmethod
    def _now() -> int:
        return int(time.monotonic() * 1000)

    def start(self) -> None:
        if self.flash is not None:
            with self._lock:
                self._boot_flash()
            self._thread.start()
            return
        with self._lock:
            self.firmware = firmware.Firmware(self.machine, self.channels, boot_id=int.from_bytes(os.urandom(4), "big"),
                                              clock=CPythonClock, core=self.core,
                                              watchdog_ms=self._watchdog_ms)
            self.machine.pins[firmware.ESTOP_PIN].drive(0)  # the E-stop loop is closed: not pressed
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.device.close()

    # --- what the customer and the technician do ---------------------------------------

    def lift_nozzle(self, channel: int) -> None:
        with self._lock:
            self.dispensers[channel].nozzle_up = True
            self.machine.pins[firmware.NOZZLE_PINS[channel]].drive(0)
            self._step()

    def hang_nozzle(self, channel: int) -> None:
        with self._lock:
            self.dispensers[channel].nozzle_up = False
            self.machine.pins[firmware.NOZZLE_PINS[channel]].drive(1)
            self._step()

    def press_estop(self) -> None:
        with self._lock:
            self.machine.pins[firmware.ESTOP_PIN].drive(1)
            self._step()

    def release_estop(self) -> None:
        with self._lock:
            self.machine.pins[firmware.ESTOP_PIN].drive(0)

    def press_reset(self) -> None:
        with self._lock:
            self.machine.pins[firmware.RESET_PIN].drive(0)
            self._step()
            self.machine.pins[firmware.RESET_PIN].drive(1)

    def status_text(self) -> str:
        return "\n".join(f"channel {c}: relay {'closed' if self.relay_closed(c) else 'open'},"
                         f" totaliser {self.totaliser_ml(c) / 1000:.2f} L" for c in range(len(self.dispensers)))

    def relay_closed(self, channel: int) -> bool:
        with self._lock:
            return self._relay(channel)

    def _relay(self, channel: int) -> bool:
        return self.machine.pins[firmware.RELAY_PINS[channel]].value() == 1

    def totaliser_ml(self, channel: int) -> int:
        with self._lock:
            return self.dispensers[channel].totaliser_ml()

    def flowing(self, channel: int) -> bool:
        with self._lock:
            return self.dispensers[channel].flowing

    def accepted(self) -> list[tuple[int, int, int]]:
        with self._lock:
            return list(self.core.accepted)

    def host_hellos(self) -> int:
        with self._lock:
            return self.core.host_hellos

    # --- the board's loop ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._flow(self._now())
                with contextlib.suppress(OSError):
                    self._step()
            self._stop.wait(0.005)

    def _boot_flash(self) -> None:
        assert self.flash is not None
        self.machine.timers.clear()
        fs = boot_guard.OsFs(os, str(self.flash) + "/")
        state = boot_guard.check(fs)
        if state == "trial":
            boot_guard.arm(self.machine, fs, self.trial_ms)  # type: ignore[no-untyped-call]
        self.boots.append(state)
        loader = FlashLoader(self.flash)
        main = loader.load("hal.firmware.main")
        self.firmware_version = int(loader.load("hal.firmware.board_core").FIRMWARE_VERSION)
        self.firmware = main.Firmware(self.machine, self.channels, boot_id=int.from_bytes(os.urandom(4), "big"),
                                      clock=CPythonClock, watchdog_ms=self._watchdog_ms, fs=fs)
        self.machine.pins[firmware.ESTOP_PIN].drive(0)

    def _step(self) -> None:
        if self.firmware is None:
            return
        try:
            self.firmware.step()
            self.machine.run_timers()
        except BoardReset:
            self._boot_flash()  # the chip restarts: relays low first, then the boot guard
        if any(self._relay(i) for i in range(self.channels)):
            self.relay_ever_closed = True

    def _pulse(self, channel: int) -> None:
        self.dispensers[channel].totaliser_pulses += 1
        self.machine.pins[firmware.PULSER_PINS[channel]].falling_edge()

    def _flow(self, now: int) -> None:
        dt_s = max(0, now - self._last) / 1000
        self._last = now
        for index, disp in enumerate(self.dispensers):
            relay = self._relay(index)
            for _ in range(disp.noise_pulses(dt_s)):
                self.machine.pins[firmware.PULSER_PINS[index]].falling_edge()  # not fuel: no totaliser
            count = disp.fuel_pulses(dt_s, relay)
            if count:
                disp.flowing = True
            for _ in range(count):
                if not disp.valve_open(self._relay(index)):
                    break  # the firmware cut the relay on the preset pulse
                self._pulse(index)
            if disp.flowing and not disp.valve_open(self._relay(index)):
                disp.valve_closed()
            if not disp.valve_open(self._relay(index)) and disp.overrun_pulse():
                self._pulse(index)
