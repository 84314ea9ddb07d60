"""The demo's tank gauge: a TLS console simulator whose tanks (one per product) drain with
what the dispensers meter, a tanker delivery mid-run, an optional leak; at the end the
shift is reconciled per tank by the agent and checked here."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from agent.domain import PRODUCT_LABELS, format_litres
from agent.tank_config import TankConfig, TankGaugeConfig
from simulators.tank_gauge import SimTank, TankGaugeSim

TANK_OF = {"pertalite": 1, "solar": 2}
LEAK_LPH = 6000.0  # --leak: litres an hour out of tank 1 (the demo is sped up), past its tolerance
DELIVERY_L = 4000.0


def nozzle_meter(board: Any, channel: int, nozzle: int) -> Callable[[], int]:
    """board: a DART line or a Forecourt of them (simulators/forecourt.py)."""
    return lambda: int(board.nozzle_totaliser_ml(channel, nozzle))


def pump_meter(board: Any, channel: int) -> Callable[[], int]:
    return lambda: int(board.totaliser_ml(channel))


def make_gauge(products: dict[int, str], grades: dict[int, tuple[str, ...]], board: Any,
               channel_of: dict[int, int], leak: bool) -> TankGaugeSim:
    used = sorted({*products.values(), *(g for gs in grades.values() for g in gs)}, key=lambda p: TANK_OF[p])
    gauge = TankGaugeSim([SimTank(TANK_OF[p], p, 30_000.0, 16_000.0) for p in used])
    for number, product in products.items():
        pump_grades = grades.get(number, ())
        if len(pump_grades) > 1:
            for nozzle, grade in enumerate(pump_grades, 1):
                gauge.connect_meter(nozzle_meter(board, channel_of[number], nozzle), TANK_OF[grade])
        else:
            gauge.connect_meter(pump_meter(board, channel_of[number]), TANK_OF[product])
    if leak:
        gauge.set_leak(1, LEAK_LPH)
    return gauge


def gauge_config(gauge: TankGaugeSim) -> TankGaugeConfig:
    return TankGaugeConfig(port=gauge.path, tanks=tuple(TankConfig(t.number, t.product, t.capacity_l)
                                                         for t in gauge.tanks),
                           poll_s=0.4, shift_s=24 * 3600, tolerance_l=2.0, tolerance_pct=0.5, sample_s=1.0)


class Reconciliations:
    """Listens to the agent's events for the shift reconciliation."""

    def __init__(self) -> None:
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "reconciliation":
            self.results.put(event)


def print_tanks(rows: list[dict[str, Any]], lang: str) -> None:
    print("  tangki (awal + terima - jual - akhir = selisih, L)" if lang == "id"
          else "  tanks (opening + deliveries - sales - closing = variance, L)")
    for row in rows:
        label = f"{'tangki' if lang == 'id' else 'tank'} {','.join(map(str, row['tanks']))} " \
                f"{PRODUCT_LABELS[row['product']]}"
        values = " / ".join(format_litres(int(row[k] * 1000), lang)
                            for k in ("opening_l", "deliveries_l", "sales_l", "closing_l"))
        flag = ("  ALARM SELISIH" if lang == "id" else "  VARIANCE ALARM") if row["alarm"] else ""
        variance = f"{row['variance_l']:+.1f}"
        print(f"  {label:<28}{values}  {variance.replace('.', ',') if lang == 'id' else variance}{flag}")
