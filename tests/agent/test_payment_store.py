"""agent/payments/store.py on a real journal file: the payments' own rows, written inside
the journal's transactions and read back only through the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.journal import Journal
from agent.payments.store import PaymentStore


@pytest.fixture
def store(tmp_path: Path) -> PaymentStore:
    return PaymentStore(Journal(tmp_path / "journal.sqlite"))


def pay(store: PaymentStore, pump: int, state: str, tx_id: str | None = None, mode: str = "postpay") -> int:
    with store.journal.atomic() as db:
        return store.insert_payment(db, pump, "card", mode, state, tx_id, 20_000, "")


def test_a_step_gets_a_unique_twelve_character_reference(store: PaymentStore) -> None:
    pay_id = pay(store, 1, "charging", mode="prepay")
    with store.journal.atomic() as db:
        first = store.insert_step(db, pay_id, "sale", 50_000)
        second = store.insert_step(db, pay_id, "void", 50_000)
    refs = [s["ecr_ref"] for s in store.steps(pay_id)]
    assert [s["step_id"] for s in store.steps(pay_id)] == [first, second]
    assert len(set(refs)) == 2 and all(len(r) == 12 for r in refs)
    assert store.step_by_ref(refs[1]) == (second, "sent")
    assert store.step_by_ref("000000000000") is None


def test_charging_is_per_pump(store: PaymentStore) -> None:
    pay(store, 2, "charging", mode="prepay")
    assert store.charging_on(2) and not store.charging_on(1)


def test_delivering_for_finds_the_sessions_payment_only_while_delivering(store: PaymentStore) -> None:
    pay_id = pay(store, 1, "delivering", tx_id="34.401.01-1")
    assert store.delivering_for("34.401.01-1") == (pay_id, "card", "postpay")
    with store.journal.atomic() as db:
        db.execute("UPDATE payments SET state='settling' WHERE pay_id=?", (pay_id,))
    assert store.delivering_for("34.401.01-1") is None


def test_first_open_step_skips_answered_and_other_states(store: PaymentStore) -> None:
    pay_id = pay(store, 1, "settling")
    with store.journal.atomic() as db:
        done = store.insert_step(db, pay_id, "sale", 10_000)
        db.execute("UPDATE payment_steps SET state='answered' WHERE step_id=?", (done,))
        unknown = store.insert_step(db, pay_id, "inquiry", 0)
        db.execute("UPDATE payment_steps SET state='unknown' WHERE step_id=?", (unknown,))
        sent = store.insert_step(db, pay_id, "refund", 1_000)
    assert store.first_open_step("unknown") == unknown
    assert store.first_open_step("sent") == sent
    assert store.step(done)["state"] == "answered"


def test_open_payments_and_waiting_customers_ignore_finished_ones(store: PaymentStore) -> None:
    settling = pay(store, 1, "settling")
    orphan = pay(store, 2, "orphan")
    charging = pay(store, 3, "charging", mode="prepay")
    pay(store, 4, "done")
    assert sorted(store.open_payments("settling", "orphan")) == [settling, orphan]
    assert sorted(store.waiting_customers()) == [(settling, "settling", "postpay"), (charging, "charging", "prepay")]
    assert store.payment(orphan)["pump"] == 2


def test_a_write_that_fails_leaves_no_row(store: PaymentStore) -> None:
    with pytest.raises(RuntimeError), store.journal.atomic() as db:
        store.insert_payment(db, 1, "card", "prepay", "charging", None, 0, "")
        raise RuntimeError("power cut before commit")
    assert not store.charging_on(1)
