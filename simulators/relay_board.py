"""Relay board plus the dispensers it is wired to, on a pseudo-terminal.

The board runs the same safety core as the firmware (hal/firmware/board_core.py). Each
dispenser has a nozzle the simulated customer lifts and hangs, a flow that runs only
while the board's relay is closed and the nozzle is up, a pulser, and its own
totaliser: the physical truth the agent's journal must match.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time

from hal import relay_proto as rp
from hal.firmware.board_core import BoardCore
from simulators.pty_device import PtyDevice


class Dispenser:
    def __init__(self, flow_lps: float, pulses_per_litre: int) -> None:
        self.flow_lps = flow_lps
        self.pulses_per_litre = pulses_per_litre
        self.nozzle_up = False
        self.totaliser_pulses = 0
        self.flowing = False
        self.fraction = 0.0
        self.overrun_due = 0

    def totaliser_ml(self) -> int:
        return self.totaliser_pulses * 1000 // self.pulses_per_litre


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
    ) -> None:
        self.device = PtyDevice()
        self.core = RecordingBoardCore(channels, watchdog_ms=watchdog_ms)
        self.dispensers = [Dispenser(flow_lps, pulses_per_litre) for _ in range(channels)]
        self.max_overrun_pulses = max_overrun_pulses
        self._rng = random.Random(seed)
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
        with self._lock:
            self.core.boot(self._now(), boot_id=self._rng.getrandbits(32))
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
            self.core.nozzle(channel, True, self._now())

    def hang_nozzle(self, channel: int) -> None:
        with self._lock:
            self.dispensers[channel].nozzle_up = False
            self.core.nozzle(channel, False, self._now())

    def press_estop(self) -> None:
        with self._lock:
            self.core.estop(self._now())

    def accepted(self) -> list[tuple[int, int, int]]:
        with self._lock:
            return list(self.core.accepted)

    def host_hellos(self) -> int:
        with self._lock:
            return self.core.host_hellos

    def relay_closed(self, channel: int) -> bool:
        with self._lock:
            return self.core.relay(channel)

    def totaliser_ml(self, channel: int) -> int:
        with self._lock:
            return self.dispensers[channel].totaliser_ml()

    def flowing(self, channel: int) -> bool:
        with self._lock:
            return self.dispensers[channel].flowing

    # --- the board's loop ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.device.read(0.01)
            with self._lock:
                now = self._now()
                if data:
                    self.core.feed(data, now)
                self._flow(now)
                self.core.tick(now)
                out = self.core.take_output()
            if out:
                with contextlib.suppress(OSError):
                    self.device.write(out)

    def _flow(self, now: int) -> None:
        dt_s = max(0, now - self._last) / 1000
        self._last = now
        for index, disp in enumerate(self.dispensers):
            valve_open = disp.nozzle_up and self.core.relay(index)
            if valve_open:
                disp.flowing = True
                disp.fraction += disp.flow_lps * disp.pulses_per_litre * dt_s
                count = int(disp.fraction)
                disp.fraction -= count
                for _ in range(count):
                    if not self.core.relay(index):
                        break  # the board opened the relay mid-tick
                    disp.totaliser_pulses += 1
                    self.core.pulse(index, now)
                valve_open = self.core.relay(index)
            if disp.flowing and not valve_open:
                disp.flowing = False
                disp.fraction = 0.0
                if disp.nozzle_up:
                    # the relay cut the flow; the solenoid valve does not shut instantly
                    disp.overrun_due = self._rng.randint(0, self.max_overrun_pulses)
            if disp.overrun_due and not valve_open:
                disp.overrun_due -= 1
                disp.totaliser_pulses += 1
                self.core.pulse(index, now)
