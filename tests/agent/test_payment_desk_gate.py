"""The payment desk's gate on a real journal with group commit: a request goes to the
terminal only once everything the desk wrote is on the card, and only the desk's own
writes count (a commit of another part of the station, e.g. an acknowledgement's deletion
that nothing syncs on a quiet station, must not hold a payment back). That a new step waits
for its sync is tests/system/test_card_sale_syncs.py's (20 ms syncs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent.journal import Journal
from agent.payments.desk import PaymentDesk
from hal import ecr_proto as ecr


class Terminal:
    """Pure bookkeeping: what was handed to the terminal."""

    connected = True
    idle = True

    def __init__(self) -> None:
        self.sent: list[ecr.Message] = []

    def submit(self, request: ecr.Message) -> None:
        self.sent.append(request)


def desk_on(journal: Journal, terminal: Terminal) -> PaymentDesk:
    def nothing(*args: Any) -> None:
        return None

    return PaymentDesk(journal, terminal, "WIB", nothing, nothing, lambda *a: False, nothing)


def test_a_write_that_changed_nothing_does_not_wait_for_another_parts_unsynced_commit(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", group_commit=True)
    journal.syncer.group_s = 30.0
    try:
        terminal = Terminal()
        desk = desk_on(journal, terminal)
        with journal.atomic() as db:  # a step journaled (and synced) but never handed over
            pay_id = desk.store.insert_payment(db, 1, "card", "postpay", "settling", "tx-1", 0, "")
            desk.store.insert_step(db, pay_id, "sale", 10_000)
        journal.outbox_put([("m1", "t", {"n": 1})])
        journal.outbox_ack(["m1"])  # no sync of its own: waits for the next one
        assert not journal.is_durable(journal.last_commit)
        with desk._write() as db:
            db.execute("UPDATE payments SET state='done' WHERE pay_id=-1")  # changes nothing
        desk.tick(time.monotonic())
        assert [m.trans_type for m in terminal.sent] == [ecr.SALE]
    finally:
        journal.close()

