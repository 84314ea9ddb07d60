"""What the journal forgets, and when: its size is bounded by retention, not by the
station's age, and nothing personal stays at rest longer than it is needed.

- A closed sale whose record headquarters has acknowledged (no longer in the outbox, its
  card payment settled) gets its plate masked ('B 1234 XYZ' -> 'B ***4 XYZ', 'B 5 XY' -> 'B * XY'): the full
  plate was needed only to show the attendant and to send it once.
- Acknowledged sales older than `days` (default 90) are deleted, with the quota rows of
  days that old and finished payments with their steps. Headquarters holds them; the
  station keeps what it needs for disputes at the pump for a quarter.
- Freed pages are reused by SQLite, so the file stops growing once the window is full.

Work per pass is bounded (`batch` rows), so a station that was offline for a month and
then acknowledged everything catches up over a few passes without a long transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from dataclasses import dataclass

from agent.domain import mask_plate
from agent.journal import Journal

log = logging.getLogger(__name__)

MASKED_UPTO = "retention_masked_upto"  # meta key: every closed session up to this seq is acknowledged and masked
EVERY_S = 3600.0


@dataclass(frozen=True)
class RetentionPolicy:
    days: float = 90.0
    mask_plates: bool = True


@dataclass(frozen=True)
class PruneResult:
    masked: int
    sessions: int
    quota_rows: int
    payments: int


def at_rest(plate: str) -> str:
    """The plate as kept after acknowledgement: the dashboard's mask ('B ***4 XYZ'), and a
    one-digit number hidden too (the dashboard's mask keeps a last digit, which would be all of it)."""
    masked = mask_plate(plate)
    parts = masked.split()
    if "*" not in masked and len(parts) >= 2:
        parts[1] = "*" * len(parts[1])
        masked = " ".join(parts)
    return masked


def _acknowledged_clause(db: sqlite3.Connection) -> str:
    """SQL that is true for a session row `s` whose record headquarters has acknowledged."""
    clause = "NOT EXISTS (SELECT 1 FROM outbox o WHERE o.msg_id = s.tx_id)"
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='payments'").fetchone():
        # a card sale's record waits with its payment until it settles (agent/payments/desk.py)
        clause += " AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.tx_id = s.tx_id AND p.state != 'done')"
    return clause


def mask_acknowledged(journal: Journal, batch: int) -> int:
    """Mask plates of acknowledged closed sessions, oldest first, stopping at the first one
    not yet acknowledged (so the watermark means 'everything before is done')."""
    with journal.atomic() as db:
        upto = int((db.execute("SELECT value FROM meta WHERE key=?", (MASKED_UPTO,)).fetchone() or ["0"])[0])
        rows = db.execute(
            f"SELECT s.seq, s.plate, s.state = 'closed' AND {_acknowledged_clause(db)} FROM sessions s"
            " WHERE s.seq > ? ORDER BY s.seq LIMIT ?", (upto, batch)).fetchall()
        masked = 0
        for seq, plate, done in rows:
            if not done:
                break
            masked_plate = at_rest(str(plate))
            if masked_plate != plate:
                db.execute("UPDATE sessions SET plate=? WHERE seq=?", (masked_plate, seq))
            masked += 1
            upto = int(seq)
        if masked:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value=excluded.value",
                       (MASKED_UPTO, str(upto)))
    return masked


def delete_old(journal: Journal, now: float, days: float, batch: int) -> tuple[int, int, int]:
    """Delete acknowledged sessions closed before now - days (only up to the masking
    watermark: those are known to be acknowledged), old quota days and finished payments."""
    cutoff = now - days * 86_400
    cutoff_day = (dt.datetime.fromtimestamp(cutoff, dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    with journal.atomic() as db:
        upto = int((db.execute("SELECT value FROM meta WHERE key=?", (MASKED_UPTO,)).fetchone() or ["0"])[0])
        sessions = db.execute(
            "DELETE FROM sessions WHERE seq IN (SELECT seq FROM sessions WHERE seq <= ? AND state='closed'"
            " AND closed_at < ? ORDER BY seq LIMIT ?)", (upto, cutoff, batch)).rowcount
        quota = db.execute("DELETE FROM quota WHERE day < ?", (cutoff_day,)).rowcount
        payments = 0
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='payments'").fetchone():
            old = [r[0] for r in db.execute("SELECT pay_id FROM payments WHERE state='done' AND created_at < ?"
                                            " ORDER BY pay_id LIMIT ?", (cutoff, batch))]
            if old:
                marks = ",".join("?" * len(old))
                db.execute(f"DELETE FROM payment_steps WHERE pay_id IN ({marks})", old)
                payments = db.execute(f"DELETE FROM payments WHERE pay_id IN ({marks})", old).rowcount
    return sessions, quota, payments


class Retention:
    """Runs the passes from the station's loop: at start, then hourly."""

    def __init__(self, journal: Journal, policy: RetentionPolicy, batch: int = 2000) -> None:
        self.journal = journal
        self.policy = policy
        self.batch = batch
        self._next_mono = 0.0

    def prune(self, now: float) -> PruneResult:
        masked = mask_acknowledged(self.journal, self.batch) if self.policy.mask_plates else 0
        sessions, quota, payments = (0, 0, 0)
        if self.policy.days > 0:
            sessions, quota, payments = delete_old(self.journal, now, self.policy.days, self.batch)
        return PruneResult(masked, sessions, quota, payments)

    def tick(self, mono: float, now: float, clock_trusted: bool) -> PruneResult | None:
        """A pass when due. Deletion waits for a trusted clock: a Pi booted in 1970 or 2099
        must not judge ages by it."""
        if mono < self._next_mono:
            return None
        result = self.prune(now) if clock_trusted else None
        if result is not None and (result.sessions or result.masked or result.payments) and (
                result.sessions == self.batch or result.masked == self.batch):
            self._next_mono = mono + 60.0  # more to do: come back soon, not in an hour
        else:
            self._next_mono = mono + EVERY_S
        if result is not None and (result.sessions or result.payments):
            log.info("retention: %d sales, %d quota rows, %d payments older than %g days deleted; %d plates masked",
                     result.sessions, result.quota_rows, result.payments, self.policy.days, result.masked)
        return result
