"""Audit of card payments against fuel delivered: the EDC terminal's own ledger (its batch:
what it charged, voided and refunded) against the litres the journal metered.

An approval is unmatched when the terminal still holds more from a customer than the
fuel delivered for that payment is worth: charged for nothing, charged twice, or a
refund that never happened. Only the terminal's amounts and the metered amounts count;
the journal's own view of the payment is used solely to join a request to its session.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

APPROVED = "00"
SALE_TYPES = ("01", "04")


def unmatched_approvals(ledger: list[dict[str, Any]], journal_path: Path) -> int:
    return len(unmatched_details(ledger, journal_path))


def unmatched_details(ledger: list[dict[str, Any]], journal_path: Path) -> list[str]:
    held: dict[str, int] = {}  # payment key -> Rupiah the terminal still holds
    refs: dict[str, list[str]] = {}
    for record in ledger:
        if record["type"] in SALE_TYPES and record["response"] == APPROVED:
            net = 0 if record["voided"] else int(record["amount"]) - int(record["refunded"])
            key = payment_key(record["ecr_ref"], journal_path)
            held[key] = held.get(key, 0) + net
            refs.setdefault(key, []).append(record["ecr_ref"])
    out = []
    for key, amount in held.items():
        delivered = delivered_idr(key, journal_path)
        if delivered is None:
            continue  # its fill is still running
        if amount > delivered:
            out.append(f"{','.join(refs[key])}: terminal holds Rp {amount}, fuel delivered Rp {delivered}")
    return out


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def payment_key(ecr_ref: str, journal_path: Path) -> str:
    db = _db(journal_path)
    try:
        row = db.execute("SELECT pay_id FROM payment_steps WHERE ecr_ref=?", (ecr_ref,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        db.close()
    return f"pay:{row[0]}" if row else f"ref:{ecr_ref}"


def delivered_idr(key: str, journal_path: Path) -> int | None:
    """Rupiah of fuel metered for a payment's session; 0 without one; None while it runs."""
    if not key.startswith("pay:"):
        return 0
    db = _db(journal_path)
    try:
        row = db.execute("SELECT s.state, s.amount_idr FROM payments p JOIN sessions s ON s.tx_id = p.tx_id"
                         " WHERE p.pay_id=?", (int(key[4:]),)).fetchone()
    finally:
        db.close()
    if row is None:
        return 0
    return int(row[1]) if row[0] == "closed" else None
