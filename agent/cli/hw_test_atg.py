"""`spbu hw test --atg`: a technician's check of the tank gauge (Veeder-Root TLS-350 /
TLS-4 class console) on its RS-232 port: the port opens, the console answers the
in-tank inventory (201) with valid checksums, every tank reads sensibly, and it answers
the alarm (205) and delivery (202) reports. Needs no person at the tanks."""

from __future__ import annotations

import queue
import time
from typing import Any, TextIO

from agent.cli.hw_test import Step, summary
from hal.tank_gauge import GaugeAlarms, GaugeDeliveries, GaugeInventory, GaugeLink, TankGauge


class GaugeTester:
    def __init__(self, port: str, out: TextIO, baud: int = 9600) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.gauge = TankGauge(port, self.events.put, baud, poll_s=0.6, deliveries_every=1)
        self.port = port
        self.out = out
        self.steps: list[Step] = []

    def record(self, name: str, passed: bool | None, detail: str) -> bool:
        self.steps.append(Step(name, passed, detail))
        word = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        print(f"{word:4}  {name}: {detail}", file=self.out, flush=True)
        return bool(passed)

    def _wait(self, kind: type, seconds: float) -> Any:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            if isinstance(event, kind) and not (isinstance(event, GaugeLink) and not event.connected):
                return event
        return None

    def run(self) -> int:
        self.gauge.start()
        try:
            self._run()
        finally:
            self.gauge.close()
        line, code = summary(self.steps)
        print(line, file=self.out, flush=True)
        return code

    def _run(self) -> None:
        inventory = self._wait(GaugeInventory, 8.0)
        if not self.record("console answers", inventory is not None,
                           "in-tank inventory (i201) received" if inventory else
                           f"no valid answer on {self.port} in 8 s (cable, baud 9600 7-O-1, computer port?)"):
            return
        self.record("checksums", self.gauge.errors == 0, f"{self.gauge.errors} damaged messages")
        for tank in inventory.tanks:
            sane = tank.volume_l >= 0 and tank.ullage_l >= 0 and -10 < tank.temperature_c < 60
            self.record(f"tank {tank.tank}", sane,
                        f"product code {tank.product_code}, {tank.volume_l:.0f} L, ullage {tank.ullage_l:.0f} L,"
                        f" height {tank.height_mm:.0f} mm, water {tank.water_mm:.0f} mm, {tank.temperature_c:.1f} C")
        alarms = self._wait(GaugeAlarms, 6.0)
        active = {t: a for t, a in alarms.alarms.items() if a} if alarms else {}
        self.record("alarm report", alarms is not None, "i205 received; active: " + (
            "; ".join(f"tank {t}: {', '.join(a)}" for t, a in active.items()) or "none") if alarms else "no answer")
        deliveries = self._wait(GaugeDeliveries, 6.0)
        self.record("delivery report", deliveries is not None,
                    f"i202 received, {len(deliveries.deliveries)} deliveries on record" if deliveries else "no answer")


def run_atg_test(port: str, out: TextIO) -> int:
    return GaugeTester(port, out).run()
