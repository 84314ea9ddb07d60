"""The station's tanks: what the gauge reads (hal/tank_gauge.py), published for the
manager's dashboard and headquarters, and the shift reconciliation a manager signs off:

    variance = closing stock - (opening stock + deliveries - metered sales)

per product (the tanks holding it summed). Metered sales are the litres journaled for
sales closed in the shift; the shift closes at the first inventory after its scheduled end
with no fill running (a fill in progress has left the tank but not yet the journal) and no
tank taking a delivery, and is reconciled at the next delivery report (so a delivery that
ended before the closing reading is counted on the right side). The first shift opens the
same way: at a quiet inventory, after a delivery report that sets which deliveries are old.
A variance past the tolerance (litres plus a percentage of sales) raises the
`tank_variance` alarm: a leak, theft or a meter out of calibration shows there first.

The shift's opening stock and the deliveries already counted are kept in the journal's
meta table, so a restart neither restarts the shift nor counts a delivery twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.journal import Journal
from agent.tank_config import TankGaugeConfig
from hal.tank_gauge import (
    GaugeAlarms,
    GaugeDeliveries,
    GaugeEvent,
    GaugeInventory,
    GaugeLink,
    TankGauge,
    TankReading,
)


@dataclass(frozen=True)
class CloseShift:
    """Reconcile the shift now (the manager's request, the demo's end): an event for the
    station's loop, which owns the journal."""


Publish = Callable[[str, dict[str, Any], bool], None]  # (topic suffix, payload, retain)
Emit = Callable[[dict[str, Any]], None]
HISTORY_POINTS = 720  # per tank over a shift; halved (every other point kept) when full
META = "tank_shift"


def reading_json(reading: TankReading, product: str, alarms: tuple[str, ...]) -> dict[str, Any]:
    return {"tank": reading.tank, "product": product, "volume_l": round(reading.volume_l, 1),
            "tc_volume_l": round(reading.tc_volume_l, 1), "ullage_l": round(reading.ullage_l, 1),
            "height_mm": round(reading.height_mm, 1), "water_mm": round(reading.water_mm, 1),
            "water_l": round(reading.water_volume_l, 1), "temperature_c": round(reading.temperature_c, 2),
            "delivering": reading.delivering, "alarms": list(alarms)}


class TankDesk:
    def __init__(self, config: TankGaugeConfig, journal: Journal, on_event: Callable[[GaugeEvent], None],
                 publish: Publish, emit: Emit, fills_running: Callable[[], bool]) -> None:
        self.config = config
        self.journal = journal
        self.gauge = TankGauge(config.port, on_event, config.baud, config.poll_s,
                               deliveries_every=2 if config.poll_s < 2 else 6)
        self._publish = publish
        self._emit = emit
        self._fills_running = fills_running
        self.products = {t.number: t.product for t in config.tanks}
        self.readings: dict[int, TankReading] = {}
        self.alarms: dict[int, tuple[str, ...]] = {}
        self.answering = False
        self.history: dict[int, list[tuple[float, float, float]]] = {n: [] for n in self.products}
        self.delivery_marks: list[dict[str, Any]] = []
        self._sampled = 0.0
        self._closing: tuple[float, dict[int, float]] | None = None  # waiting for a newer delivery report
        self._close_wanted = False
        self.last_reconciliation: dict[str, Any] | None = None
        self.shift = self._load_shift()
        self._baseline: list[str] | None = list(self.shift["known"]) if self.shift else None
        self._quiet = False  # the last inventory saw no tank taking a delivery

    # --- shift state, journaled -------------------------------------------------------------

    def _load_shift(self) -> dict[str, Any]:
        try:
            shift = json.loads(self.journal.get_meta(META) or "{}")
        except ValueError:
            shift = {}
        return shift if isinstance(shift, dict) and "start" in shift else {}

    def _save_shift(self) -> None:
        self.journal.set_meta(META, json.dumps(self.shift))

    def _open_shift(self, now: float, stock: dict[int, float], known: list[str]) -> None:
        self.shift = {"start": now, "opening": {str(k): v for k, v in stock.items()}, "known": known,
                      "deliveries": {}}
        self._save_shift()
        self.history = {n: [] for n in self.products}
        self.delivery_marks = []

    # --- events from the gauge -------------------------------------------------------------

    def on_event(self, event: GaugeEvent, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if isinstance(event, GaugeLink):
            self.answering = event.connected
            self._emit({"type": "tank", "what": "gauge_ok"} if event.connected else
                       {"type": "alert", "alert": "tank_gauge_silent", "detail": self.config.port})
        elif isinstance(event, GaugeInventory):
            self._inventory(event, now)
        elif isinstance(event, GaugeAlarms):
            self._alarms(event)
        elif isinstance(event, GaugeDeliveries):
            self._deliveries(event, now)

    def _stock(self) -> dict[int, float]:
        return {n: r.volume_l for n, r in self.readings.items() if n in self.products}

    def _inventory(self, event: GaugeInventory, now: float) -> None:
        self.readings.update({r.tank: r for r in event.tanks})
        if not self.shift:
            # The opening stock must not straddle a delivery: a tank filling now voids the
            # baseline; the next delivery report after a quiet reading sets it again.
            self._quiet = not any(r.delivering for r in event.tanks)
            if not self._quiet:
                self._baseline = None
            elif self._baseline is not None and set(self.products) <= set(self.readings):
                self._open_shift(now, self._stock(), self._baseline)
        if now - self._sampled >= self.config.sample_s:
            self._sampled = now
            for reading in event.tanks:
                self._sample(reading, now)
        self._publish("tanks", self.snapshot(now), True)
        if self.shift and now - float(self.shift["start"]) >= self.config.shift_s:
            self._close_wanted = True
        quiet = not self._fills_running() and not any(r.delivering for r in self.readings.values())
        if self._close_wanted and self._closing is None and quiet:
            self._closing = (now, self._stock())  # closed once a newer delivery report is in

    def _sample(self, reading: TankReading, now: float) -> None:
        points = self.history.setdefault(reading.tank, [])
        points.append((round(now, 1), round(reading.volume_l, 1), round(reading.height_mm, 1)))
        if len(points) > HISTORY_POINTS:
            del points[::2]
        self._publish("tanks/history", {"shift_start": self.shift.get("start"), "deliveries": self.delivery_marks,
                                        "tanks": {str(n): p for n, p in self.history.items()}}, True)

    def _alarms(self, event: GaugeAlarms) -> None:
        for tank, names in event.alarms.items():
            new = set(names) - set(self.alarms.get(tank, ()))
            for name in sorted(new):
                self._emit({"type": "alert", "alert": f"tank_{name}", "tank": tank, "detail": f"tank {tank}"})
            self.alarms[tank] = names

    def _deliveries(self, event: GaugeDeliveries, now: float) -> None:
        if self._baseline is None and self._quiet:
            # Before the first shift: the deliveries the console reports now (all ended before
            # a quiet inventory) are known, never counted; the shift opens at the next quiet one.
            self._baseline = sorted(f"{d.tank}@{d.end}" for d in event.deliveries)
        if self.shift:
            known = set(self.shift["known"])
            for delivery in event.deliveries:
                key = f"{delivery.tank}@{delivery.end}"
                if key in known or delivery.litres <= 0:
                    continue
                self.shift["known"].append(key)
                self.shift["deliveries"][key] = round(delivery.litres, 1)
                self.delivery_marks.append({"tank": delivery.tank, "at": now, "litres": round(delivery.litres, 1)})
                self._emit({"type": "tank", "what": "delivery", "tank": delivery.tank,
                            "detail": f"{delivery.litres:.0f} L into tank {delivery.tank}"})
            self._save_shift()
        if self._closing is not None:
            closing_at, closing = self._closing
            self._closing = None
            self.reconcile(closing_at, closing)

    # --- reconciliation ---------------------------------------------------------------------

    def reconcile(self, closing_at: float, closing: dict[int, float]) -> dict[str, Any]:
        """Close the shift with this closing stock, publish the result, open the next one."""
        start = float(self.shift["start"])
        sold: dict[str, int] = {}
        for closed_at, product, ml in self.journal.sales_since(start):
            if closed_at <= closing_at:
                sold[product] = sold.get(product, 0) + ml
        delivered: dict[int, float] = {}
        for key, litres in self.shift["deliveries"].items():
            tank = int(key.split("@")[0])
            delivered[tank] = delivered.get(tank, 0.0) + float(litres)
        rows = []
        for product in sorted(set(self.products.values())):
            tanks = sorted(n for n, p in self.products.items() if p == product)
            opening = sum(float(self.shift["opening"].get(str(n), 0.0)) for n in tanks)
            deliveries = sum(delivered.get(n, 0.0) for n in tanks)
            sales = sold.get(product, 0) / 1000
            closing_l = sum(closing.get(n, 0.0) for n in tanks)
            variance = closing_l - (opening + deliveries - sales)
            tolerance = self.config.tolerance_l + self.config.tolerance_pct / 100 * sales
            rows.append({"product": product, "tanks": tanks, "opening_l": round(opening, 1),
                         "deliveries_l": round(deliveries, 1), "sales_l": round(sales, 2),
                         "closing_l": round(closing_l, 1), "variance_l": round(variance, 1),
                         "tolerance_l": round(tolerance, 1), "alarm": abs(variance) > tolerance})
        result = {"shift_start": start, "shift_end": closing_at, "products": rows,
                  "alarm": any(r["alarm"] for r in rows)}
        self.last_reconciliation = result
        self._publish("tanks/reconciliation", result, True)
        self._emit({"type": "reconciliation", **result})
        for row in rows:
            if row["alarm"]:
                self._emit({"type": "alert", "alert": "tank_variance", "product": row["product"],
                            "detail": f"{row['product']}: variance {row['variance_l']:+.1f} L over the shift"
                                      f" (tolerance {row['tolerance_l']:.1f} L): leak, theft or meter drift?"})
        self._close_wanted = False
        self._open_shift(closing_at, closing, list(self.shift["known"]))
        return result

    def close_shift_now(self) -> bool:
        """Close the shift with the latest readings (the manager's button, the demo's end);
        the reconciliation follows the next delivery report, as at a scheduled close."""
        if not self.shift or not set(self.products) <= set(self.readings):
            return False
        self._close_wanted = True  # at the next inventory with no fill running and no delivery
        return True

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"at": now, "gauge": "ok" if self.answering else "silent",
                "tanks": [reading_json(self.readings[n], self.products.get(n, "?"), self.alarms.get(n, ()))
                          for n in sorted(self.readings)]}
