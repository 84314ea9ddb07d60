"""The payments' own tables in the station journal, and every read the desk makes of them.

The tables live in the journal's SQLite file so that a payment step and the session it
pays for change in one transaction (Journal.atomic); the desk writes inside those
transactions, and reads through this store."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from typing import Any

from agent.journal import Journal

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS payments (
        pay_id INTEGER PRIMARY KEY AUTOINCREMENT,
        pump INTEGER NOT NULL,
        method TEXT NOT NULL,
        mode TEXT NOT NULL,
        tx_id TEXT,
        state TEXT NOT NULL,
        target_idr INTEGER,
        dispensed_ml INTEGER NOT NULL DEFAULT 0,
        preset_ml INTEGER NOT NULL DEFAULT 0,
        scan_text TEXT NOT NULL DEFAULT '',
        record TEXT,
        final_method TEXT,
        status TEXT,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS payments_open ON payments(state) WHERE state != 'done'",
    "CREATE INDEX IF NOT EXISTS payments_tx ON payments(tx_id)",
    """CREATE TABLE IF NOT EXISTS payment_steps (
        step_id INTEGER PRIMARY KEY AUTOINCREMENT,
        pay_id INTEGER NOT NULL REFERENCES payments(pay_id),
        kind TEXT NOT NULL,
        ecr_ref TEXT UNIQUE NOT NULL,
        amount_idr INTEGER NOT NULL,
        state TEXT NOT NULL,
        response_code TEXT NOT NULL DEFAULT '',
        approval_code TEXT,
        rrn TEXT,
        invoice TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS steps_open ON payment_steps(state) WHERE state != 'answered'",
)

# Rows still in play: "done" payments and answered steps are history.
OPEN_PAYMENTS = "state != 'done'"
OPEN_STEPS = "state != 'answered'"


class PaymentStore:
    """`pumps`: the island this store's desk pays for (empty: the whole station). The work
    loop's reads see only those pumps' payments; reads by id or fill see every row."""

    def __init__(self, journal: Journal, pumps: tuple[int, ...] = ()) -> None:
        self.journal = journal
        only = ",".join(str(int(n)) for n in pumps)  # ints only: safe to place in the SQL
        self._mine = f" AND pump IN ({only})" if pumps else ""
        self._mine_steps = f" AND pay_id IN (SELECT pay_id FROM payments WHERE pump IN ({only}))" if pumps else ""
        with journal.atomic() as db:
            for statement in SCHEMA:
                db.execute(statement)

    # --- writes, inside the caller's Journal.atomic() transaction -----------------------

    @staticmethod
    def insert_payment(db: sqlite3.Connection, pump: int, method: str, mode: str, state: str, tx_id: str | None,
                       preset_ml: int, scan_text: str) -> int:
        cur = db.execute("INSERT INTO payments (pump, method, mode, tx_id, state, preset_ml, scan_text, created_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (pump, method, mode, tx_id, state, preset_ml, scan_text, time.time()))
        return int(cur.lastrowid or 0)

    @staticmethod
    def insert_step(db: sqlite3.Connection, pay_id: int, kind: str, amount: int, invoice: str = "") -> int:
        """A request about to go to the terminal, journaled as `sent` before it is."""
        cur = db.execute("INSERT INTO payment_steps (pay_id, kind, ecr_ref, amount_idr, state, invoice, at)"
                         " VALUES (?, ?, ?, ?, 'sent', ?, ?)",
                         (pay_id, kind, "pending", amount, invoice, dt.datetime.now(dt.UTC).isoformat()))
        step_id = int(cur.lastrowid or 0)
        # the cash register's reference: unique per request, 12 characters
        db.execute("UPDATE payment_steps SET ecr_ref=? WHERE step_id=?",
                   (f"{pay_id % 10**8:08d}{kind[0].upper()}{step_id % 1000:03d}", step_id))
        return step_id

    # --- reads ------------------------------------------------------------------------

    def charging_on(self, pump: int) -> bool:
        """A prepayment on this pump is at the terminal."""
        return bool(self.journal.read(
            f"SELECT 1 FROM payments WHERE {OPEN_PAYMENTS} AND state='charging' AND pump=?", (pump,)))

    def delivering_for(self, tx_id: str) -> tuple[Any, ...] | None:
        """(pay_id, method, mode) of the payment waiting for this session's fuel."""
        rows = self.journal.read("SELECT pay_id, method, mode FROM payments WHERE tx_id=? AND state='delivering'",
                                 (tx_id,))
        return rows[0] if rows else None

    def latest_for_tx(self, tx_id: str) -> tuple[Any, ...] | None:
        """(pay_id, state) of the newest payment of a fill, or None (paid in cash)."""
        rows = self.journal.read("SELECT pay_id, state FROM payments WHERE tx_id=? ORDER BY pay_id DESC LIMIT 1",
                                 (tx_id,))
        return rows[0] if rows else None

    def first_open_step(self, state: str) -> int | None:
        rows = self.journal.read(f"SELECT MIN(step_id) FROM payment_steps WHERE {OPEN_STEPS} AND state=?"
                                 f"{self._mine_steps} HAVING COUNT(*)", (state,))
        return int(rows[0][0]) if rows else None

    def open_payments(self, *states: str) -> list[int]:
        marks = ", ".join("?" * len(states))
        return [int(r[0]) for r in self.journal.read(
            f"SELECT pay_id FROM payments WHERE {OPEN_PAYMENTS} AND state IN ({marks}){self._mine}", states)]

    def waiting_customers(self) -> list[tuple[int, str, str]]:
        """(pay_id, state, mode) of payments a customer may be standing at the terminal for."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self.journal.read(
            f"SELECT pay_id, state, mode FROM payments WHERE {OPEN_PAYMENTS}"
            f" AND state IN ('charging', 'settling'){self._mine}")]

    def step_by_ref(self, ecr_ref: str) -> tuple[Any, ...] | None:
        rows = self.journal.read("SELECT step_id, state FROM payment_steps WHERE ecr_ref=?", (ecr_ref,))
        return rows[0] if rows else None

    def payment(self, pay_id: int) -> dict[str, Any]:
        return self.journal.read_dicts("SELECT * FROM payments WHERE pay_id=?", (pay_id,))[0]

    def steps(self, pay_id: int) -> list[dict[str, Any]]:
        return self.journal.read_dicts("SELECT * FROM payment_steps WHERE pay_id=? ORDER BY step_id", (pay_id,))

    def step(self, step_id: int) -> dict[str, Any]:
        return self.journal.read_dicts("SELECT * FROM payment_steps WHERE step_id=?", (step_id,))[0]
