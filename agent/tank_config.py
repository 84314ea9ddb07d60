"""`[tank_gauge]` and `[[tanks]]` in the station config: where the tank gauge is, which
tank holds which product, and the shift reconciliation's tolerance.

    [tank_gauge]
    port = "/dev/spbu-atg"        # the TLS console's RS-232 port (udev name)
    baud = 9600
    poll_s = 10                   # inventory and alarms each poll period
    shift_h = 8                   # a shift is reconciled at the first quiet moment after this
    tolerance_l = 50              # variance alarm past tolerance_l + tolerance_pct % of sales
    tolerance_pct = 0.5

    [[tanks]]
    number = 1
    product = "pertalite"
    capacity_l = 30000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.domain import PRODUCTS


@dataclass(frozen=True)
class TankConfig:
    number: int
    product: str
    capacity_l: float


@dataclass(frozen=True)
class TankGaugeConfig:
    port: str
    tanks: tuple[TankConfig, ...]
    baud: int = 9600
    poll_s: float = 10.0
    shift_s: float = 8 * 3600.0
    tolerance_l: float = 50.0
    tolerance_pct: float = 0.5
    sample_s: float = 60.0  # one level sample per tank for the dashboard's chart


def _number(raw: dict[str, Any], key: str, where: str, default: float | None, low: float, high: float) -> float:
    value = raw.get(key, default)
    if value is None:
        raise ValueError(f"{where}: missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{where}: {key} must be a number from {low:g} to {high:g}")
    return float(value)


def parse_tanks(data: dict[str, Any]) -> TankGaugeConfig | None:
    gauge = data.get("tank_gauge")
    if gauge is None:
        return None
    if not isinstance(gauge, dict) or not isinstance(gauge.get("port"), str):
        raise ValueError("[tank_gauge]: must be a table with a 'port'")
    known = {"port", "baud", "poll_s", "shift_h", "tolerance_l", "tolerance_pct", "sample_s"}
    unknown = set(gauge) - known
    if unknown:
        raise ValueError(f"[tank_gauge]: unknown setting {sorted(unknown)[0]!r}")
    raw_tanks = data.get("tanks", [])
    if not isinstance(raw_tanks, list) or not raw_tanks:
        raise ValueError("[tank_gauge] needs at least one [[tanks]] entry")
    tanks = []
    for index, raw in enumerate(raw_tanks):
        where = f"[[tanks]] #{index + 1}"
        if not isinstance(raw, dict) or raw.get("product") not in PRODUCTS:
            raise ValueError(f"{where}: product must be one of {', '.join(PRODUCTS)}")
        tanks.append(TankConfig(int(_number(raw, "number", where, None, 1, 99)), str(raw["product"]),
                                _number(raw, "capacity_l", where, None, 100, 200_000)))
    if len({t.number for t in tanks}) != len(tanks):
        raise ValueError("[[tanks]]: tank numbers must be unique")
    return TankGaugeConfig(
        port=gauge["port"], tanks=tuple(tanks), baud=int(_number(gauge, "baud", "[tank_gauge]", 9600, 300, 115200)),
        poll_s=_number(gauge, "poll_s", "[tank_gauge]", 10, 0.2, 3600),
        shift_s=_number(gauge, "shift_h", "[tank_gauge]", 8, 0.0002, 24) * 3600,
        tolerance_l=_number(gauge, "tolerance_l", "[tank_gauge]", 50, 0, 10_000),
        tolerance_pct=_number(gauge, "tolerance_pct", "[tank_gauge]", 0.5, 0, 100),
        sample_s=_number(gauge, "sample_s", "[tank_gauge]", 60, 0.1, 3600))


def render_tanks(cfg: TankGaugeConfig | None) -> list[str]:
    if cfg is None:
        return []
    lines = ["", "[tank_gauge]", f"port = \"{cfg.port}\"", f"baud = {cfg.baud}", f"poll_s = {cfg.poll_s}",
             f"shift_h = {cfg.shift_s / 3600}", f"tolerance_l = {cfg.tolerance_l}",
             f"tolerance_pct = {cfg.tolerance_pct}", f"sample_s = {cfg.sample_s}"]
    for tank in cfg.tanks:
        lines += ["", "[[tanks]]", f"number = {tank.number}", f"product = \"{tank.product}\"",
                  f"capacity_l = {tank.capacity_l}"]
    return lines
