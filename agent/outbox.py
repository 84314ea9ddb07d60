"""Outbox delivery: journaled rows are published in order with a bounded in-flight window and
removed only when headquarters acknowledges them at application level.

A broker PUBACK proves nothing (paho's in-flight queue and a broker's queue vanish on
restart), so anything not acknowledged is sent again after a reconnect or a timeout.
Transaction ids are idempotent: headquarters drops repeats. A timeout that brings no
acknowledgement doubles the wait before the next resend (up to a cap), so a headquarters
that is up but not answering is not flooded; any acknowledgement resets it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from agent.journal import Journal

DEFAULT_WINDOW = 1000  # in-flight rows; headquarters acknowledges in batches of up to 1000


class OutboxSender:
    def __init__(self, journal: Journal, window: int = DEFAULT_WINDOW, resend_after_s: float = 15.0,
                 max_resend_after_s: float = 240.0, rate_window_s: float = 60.0) -> None:
        self.journal = journal
        self.window = window
        self.base_resend_after_s = resend_after_s
        self.resend_after_s = resend_after_s
        self.max_resend_after_s = max_resend_after_s
        self.rate_window_s = rate_window_s
        self._in_flight: dict[str, tuple[int, float]] = {}  # msg_id -> (seq, sent at), oldest first
        self._last_seq = 0
        self._acked_at: deque[tuple[float, int]] = deque()  # (monotonic time, rows) for the drain rate
        self.sent = 0
        self.acked = 0
        self.resends = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def restart(self) -> None:
        """After a reconnect: everything unacknowledged goes out again, oldest first."""
        self._in_flight.clear()
        self._last_seq = 0

    def pump(self, now: float, publish: Callable[[str, bytes], bool]) -> int:
        if self._in_flight:
            oldest_sent = next(iter(self._in_flight.values()))[1]
            if now - oldest_sent > self.resend_after_s:
                self.resends += 1
                self.resend_after_s = min(self.resend_after_s * 2, self.max_resend_after_s)
                self.restart()
        free = self.window - len(self._in_flight)
        if free <= 0:
            return 0
        count = 0
        for row in self.journal.outbox_pending(after_seq=self._last_seq, limit=free):
            if not publish(row.topic, row.payload):
                break
            self._in_flight[row.msg_id] = (row.seq, now)
            self._last_seq = row.seq
            count += 1
        self.sent += count
        return count

    def on_ack(self, msg_ids: list[str], now: float | None = None) -> int:
        # Only what is in flight: an acknowledgement can never delete a row headquarters
        # was not sent (after a restart everything goes out again, and is acked again).
        msg_ids = [m for m in msg_ids if m in self._in_flight]
        removed = self.journal.outbox_ack(msg_ids)
        for msg_id in msg_ids:
            self._in_flight.pop(msg_id, None)
        self.acked += removed
        if removed:
            self.resend_after_s = self.base_resend_after_s
            self._acked_at.append((time.monotonic() if now is None else now, removed))
        return removed

    def drain_rate(self, now: float) -> float:
        """Rows acknowledged per second over the last rate window (0 when nothing moved)."""
        while self._acked_at and now - self._acked_at[0][0] > self.rate_window_s:
            self._acked_at.popleft()
        return sum(n for _, n in self._acked_at) / self.rate_window_s
