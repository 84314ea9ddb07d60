"""Outbox delivery: journaled rows are published in order with a bounded in-flight window and
removed only when headquarters acknowledges them at application level.

A broker PUBACK proves nothing (paho's in-flight queue and a broker's queue vanish on
restart), so anything not acknowledged is sent again after a reconnect or a timeout.
Transaction ids are idempotent: headquarters drops repeats.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.journal import Journal


class OutboxSender:
    def __init__(self, journal: Journal, window: int = 16, resend_after_s: float = 15.0) -> None:
        self.journal = journal
        self.window = window
        self.resend_after_s = resend_after_s
        self._in_flight: dict[str, tuple[int, float]] = {}  # msg_id -> (seq, sent at)
        self._last_seq = 0
        self.sent = 0
        self.acked = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def restart(self) -> None:
        """After a reconnect: everything unacknowledged goes out again, oldest first."""
        self._in_flight.clear()
        self._last_seq = 0

    def pump(self, now: float, publish: Callable[[str, bytes], bool]) -> int:
        if any(now - sent_at > self.resend_after_s for _, sent_at in self._in_flight.values()):
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

    def on_ack(self, msg_ids: list[str]) -> int:
        removed = self.journal.outbox_ack(msg_ids)
        for msg_id in msg_ids:
            self._in_flight.pop(msg_id, None)
        self.acked += removed
        return removed
