"""The shift close (serah terima) report of one attendant: what the pumps they served sold
between sign-in and close, how it was paid, and the pumps' own totalisers at both ends, so
the cash in the attendant's pouch and the meters can be checked against the journal."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCHEMA = "spbu.shift/1"
PaymentOf = Callable[[str], dict[str, Any] | None]  # tx_id -> the card/QRIS payment object, or None (cash)


@dataclass(frozen=True)
class Shift:
    shift_id: int
    device: str
    attendant: str
    name: str
    pumps: tuple[int, ...]
    started_at: float  # epoch seconds
    totals_start: dict[int, int | None]  # pump -> totaliser, ml (None: the device did not report one)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _sessions(db: sqlite3.Connection, shift: Shift, ended_at: float) -> list[tuple[str, int, str, int, int]]:
    marks = ",".join("?" * len(shift.pumps))
    rows = db.execute(f"SELECT tx_id, pump, product, dispensed_ml, amount_idr FROM sessions WHERE state='closed'"
                      f" AND closed_at >= ? AND closed_at <= ? AND pump IN ({marks}) ORDER BY seq",
                      (shift.started_at, ended_at, *shift.pumps)).fetchall()
    return [(str(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]


def _money(rows: list[tuple[str, int, str, int, int]], payment_of: PaymentOf) -> dict[str, int]:
    money = {"cash_expected_idr": 0, "card_idr": 0, "qris_idr": 0, "pending_idr": 0}
    for tx_id, _pump, _product, _ml, amount in rows:
        pay = payment_of(tx_id)
        if pay is None or pay["method"] == "cash":
            money["cash_expected_idr"] += amount  # cash chosen, or a card declined and paid in cash
        elif not pay.get("settled", True):
            money["pending_idr"] += amount  # the terminal has not settled it yet
        else:
            money[f"{pay['method']}_idr"] += int(pay["amount_idr"])
    return money


def build_report(db: sqlite3.Connection, station: str, shift: Shift, ended_at: float,
                 totals_end: dict[int, int | None], payment_of: PaymentOf) -> dict[str, Any]:
    rows = _sessions(db, shift, ended_at)
    products: dict[str, dict[str, int]] = {}
    for _tx, _pump, product, ml, amount in rows:
        row = products.setdefault(product, {"litres_ml": 0, "amount_idr": 0, "count": 0})
        row["litres_ml"] += ml
        row["amount_idr"] += amount
        row["count"] += 1
    totalisers = {}
    for pump in shift.pumps:
        start, end = shift.totals_start.get(pump), totals_end.get(pump)
        totalisers[str(pump)] = {"start_ml": start, "end_ml": end,
                                 "delta_ml": None if start is None or end is None else end - start,
                                 "journal_ml": sum(r[3] for r in rows if r[1] == pump)}
    return {"schema": SCHEMA, "shift_id": f"{station}-{shift.device}-{shift.shift_id}", "station": station,
            "device": shift.device, "attendant": {"number": shift.attendant, "name": shift.name},
            "pumps": list(shift.pumps), "started_at": _iso(shift.started_at), "ended_at": _iso(ended_at),
            "transactions": len(rows), "products": products, **_money(rows, payment_of),
            "totalisers": totalisers}
