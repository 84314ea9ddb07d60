"""Transaction records as a station writes them (tx.schema.json), for load and outage runs
that fill a journal's outbox directly instead of fuelling through pumps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agent.domain import amount_idr, mask_plate


def synthetic_tx(station: str, seq: int, vehicle_id: int, dispensed_ml: int, day: str = "2026-01-05",
                 product: str = "solar", limit_ml: int = 60_000, before_ml: int = 0,
                 price_idr: int = 6_800, plate: str = "B 1234 XYZ") -> dict[str, Any]:
    opened = dt.datetime.fromisoformat(f"{day}T03:00:00+00:00") + dt.timedelta(seconds=seq % 40_000)
    amount = amount_idr(dispensed_ml, price_idr)
    return {
        "schema": "spbu.tx/1",
        "tx_id": f"{station}-{seq:08d}",
        "station": station,
        "pump": 1 + seq % 8,
        "vehicle_id": str(vehicle_id),
        "plate_masked": mask_plate(plate),
        "product": product,
        "dispensed_ml": dispensed_ml,
        "preset_ml": dispensed_ml,
        "unit_price_idr": price_idr,
        "amount_idr": amount,
        "payment": {"method": "cash", "mode": "postpay", "status": "unpaid", "amount_idr": amount,
                    "approval_code": None, "rrn": None, "steps": []},
        "quota": {"day": day, "limit_ml": limit_ml, "before_ml": before_ml, "after_ml": before_ml + dispensed_ml},
        "times": {"opened_at": opened.isoformat(), "closed_at": (opened + dt.timedelta(seconds=95)).isoformat(),
                  "duration_s": 95.0, "clock_trusted": True},
        "end_reason": "nozzle_hung",
        "final_state": "completed",
        "allowlist_version": 1,
        "policy_version": 1,
    }
