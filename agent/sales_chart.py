"""Litres per hour per product today, for the manager's chart: from the journal's closed
sales since local midnight of the station's zone (WIB, WITA or WIT)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agent.domain import ZONES
from agent.journal import Journal


def hourly(journal: Journal, zone: str, now: dt.datetime) -> dict[str, Any]:
    offset = dt.timedelta(hours=ZONES[zone])
    local = now.astimezone(dt.UTC) + offset
    midnight = (local.replace(hour=0, minute=0, second=0, microsecond=0) - offset).replace(tzinfo=dt.UTC)
    hours: dict[str, list[float]] = {}
    for closed_at, product, ml in journal.sales_since(midnight.timestamp()):
        hour = min(23, int((closed_at - midnight.timestamp()) // 3600))
        hours.setdefault(product, [0.0] * 24)[hour] += ml / 1000
    return {"day": local.date().isoformat(), "zone": zone,
            "litres": {p: [round(v, 2) for v in values] for p, values in sorted(hours.items())}}
