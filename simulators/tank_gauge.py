"""A Veeder-Root TLS-350 class tank gauge console on a pseudo-terminal (or a real serial
port), answering the computer-format commands of hal/tls_proto.py: 201 inventory, 202
deliveries, 205 alarms. Its tanks drain with the fuel the dispensers really meter (it
reads their totalisers), take deliveries from a tanker, and can leak: a leak is fuel
that leaves the tank without passing any meter, which shift reconciliation must catch.

Tanks are horizontal cylinders reduced to a straight line (height proportional to
volume): enough for reconciliation, which works in volumes. Units: litres, millimetres,
degrees Celsius.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hal import tls_proto as tls
from simulators.pty_device import PtyDevice, SerialDevice, ThreadedDevice

PRODUCT_CODES = {"pertalite": "1", "solar": "2"}
DIAMETER_MM = 2500.0


@dataclass
class SimTank:
    number: int
    product: str
    capacity_l: float
    volume_l: float
    water_l: float = 20.0
    temperature_c: float = 29.5
    leak_lph: float = 0.0
    deliveries: list[tuple[str, str, list[float]]] = field(default_factory=list)
    delivering_until: float = 0.0

    def height(self, volume: float) -> float:
        return min(DIAMETER_MM, volume / self.capacity_l * DIAMETER_MM)

    def inventory(self) -> list[float]:
        return [self.volume_l, self.volume_l * (1 - 0.00084 * (self.temperature_c - 15)),
                self.capacity_l - self.volume_l - self.water_l, self.height(self.volume_l),
                self.height(self.water_l), self.temperature_c, self.water_l]

    def alarms(self) -> list[str]:
        names = []
        if self.leak_lph >= 50:
            names.append("sudden_loss_alarm")
        if self.volume_l < 0.1 * self.capacity_l:
            names.append("low_product_alarm")
        if self.volume_l > 0.95 * self.capacity_l:
            names.append("overfill_alarm")
        if self.water_l > 100:
            names.append("high_water_alarm")
        return names


def _stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now()).strftime("%Y-%m-%dT%H:%M")


class TankGaugeSim(ThreadedDevice):
    def __init__(self, tanks: list[SimTank] | None = None, port: str | None = None, baudrate: int = 9600) -> None:
        self.device: PtyDevice | SerialDevice = SerialDevice(port, baudrate) if port else PtyDevice()
        self.tanks = tanks or [SimTank(1, "pertalite", 30_000, 18_000), SimTank(2, "solar", 30_000, 15_000)]
        self._by_number = {t.number: t for t in self.tanks}
        self._lock = threading.Lock()
        self._decoder = tls.CommandDecoder()
        self._meters: list[tuple[Callable[[], int], int, int]] = []  # (total ml, tank, last ml)
        self.commands = 0
        self._last = time.monotonic()
        self._make_thread("tank-gauge")

    # --- the forecourt ---------------------------------------------------------------

    def connect_meter(self, total_ml: Callable[[], int], tank: int) -> None:
        """A dispenser's (or nozzle's) totaliser that draws from this tank."""
        with self._lock:
            self._meters.append((total_ml, tank, total_ml()))

    def deliver(self, tank: float, litres: float) -> None:
        """A tanker drops `litres` into the tank (recorded for the 202 delivery report)."""
        with self._lock:
            t = self._by_number[int(tank)]
            if litres <= 0 or t.volume_l + litres > t.capacity_l:
                raise ValueError(f"tank {t.number} takes 0..{t.capacity_l - t.volume_l:.0f} L now")
            start = list(t.inventory())
            t.volume_l += litres
            t.temperature_c -= 0.3  # fresh fuel from the tanker is a little cooler
            end = t.inventory()
            values = [start[0], start[1], start[6], start[5], end[0], end[1], end[6], end[5], start[3], end[3]]
            t.deliveries.append((_stamp(), _stamp(), values))
            t.deliveries = t.deliveries[-10:]  # a console keeps the last few deliveries
            t.delivering_until = time.monotonic() + 2.0

    def set_leak(self, tank: float, litres_per_hour: float) -> None:
        with self._lock:
            if litres_per_hour < 0:
                raise ValueError("a leak rate is litres per hour, 0 or more")
            self._by_number[int(tank)].leak_lph = litres_per_hour

    def volume_l(self, tank: int) -> float:
        with self._lock:
            self._drain(time.monotonic())
            return self._by_number[tank].volume_l

    def status_text(self) -> str:
        with self._lock:
            return "\n".join(f"tank {t.number} {t.product}: {t.volume_l:.1f} L of {t.capacity_l:.0f},"
                             f" water {t.water_l:.0f} L, {t.temperature_c:.1f} C, leak {t.leak_lph:g} L/h"
                             for t in self.tanks)

    # --- the console -----------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        elapsed = now - self._last
        self._last = now
        for t in self.tanks:
            t.volume_l = max(0.0, t.volume_l - t.leak_lph * elapsed / 3600)
        for i, (total_ml, tank, last) in enumerate(self._meters):
            current = total_ml()
            if current != last:
                self._meters[i] = (total_ml, tank, current)
                t = self._by_number[tank]
                t.volume_l = max(0.0, t.volume_l - (current - last) / 1000)

    def _answer(self, function: str, tank: int) -> bytes:
        self.commands += 1
        stamp = _stamp()
        chosen = [t for t in self.tanks if tank in (0, t.number)]
        if tank and not chosen:
            return bytes([tls.SOH]) + tls.UNKNOWN_COMMAND + bytes([tls.ETX])
        if function == tls.INVENTORY:
            rows = [(t.number, PRODUCT_CODES.get(t.product, "0"),
                     tls.STATUS_DELIVERY if time.monotonic() < t.delivering_until else 0, t.inventory())
                    for t in chosen]
            return tls.inventory_response(tank, stamp, rows)
        if function == tls.DELIVERIES:  # a delivery is reported once it has ended, as the console does
            now = time.monotonic()
            return tls.deliveries_response(tank, stamp, [(t.number, PRODUCT_CODES.get(t.product, "0"),
                                                          t.deliveries if now >= t.delivering_until
                                                          else t.deliveries[:-1]) for t in chosen])
        if function == tls.ALARMS_FN:
            return tls.alarms_response(tank, stamp, [(t.number, t.alarms()) for t in chosen])
        return bytes([tls.SOH]) + tls.UNKNOWN_COMMAND + bytes([tls.ETX])

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.device.read(0.05)
            with self._lock:  # the meters' own locks are never held while they call us: no cycle
                self._drain(time.monotonic())
                out = b"".join(self._answer(e[1], e[2]) for e in self._decoder.feed(data) if e[0] == "command")
            if out:
                with contextlib.suppress(OSError):
                    self.device.write(out)
