"""Payments on the EDC terminal: cash, card or QRIS; prepay or postpay; automatic void and
refund. Nothing charged stays undelivered.

Every payment is a row in the journal, every request to the terminal a step row written
*before* it is sent (state 'sent') and updated when answered, so after a crash:

- a step that was sent but never answered is 'unknown' until a last-transaction inquiry
  tells whether the terminal did it; nothing is charged again before that;
- each payment has a target: what the terminal should have charged net (the delivered
  amount, or 0 when no delivery will come). While the net of its approved sales, voids
  and refunds is above the target, the desk voids (nothing delivered, same day) or
  refunds the difference. A prepayment found without its session at boot gets target 0.

The transaction record of a card or QRIS payment is kept back (stored with the payment,
in the same SQLite transaction that closes the session) and queued for headquarters only
when the payment is settled, with the final `payment` object.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.domain import ZONES, amount_idr
from agent.journal import Journal, SessionRow
from agent.killpoints import killpoint
from agent.payments.receipt import render_receipt
from agent.payments.store import OPEN_PAYMENTS, OPEN_STEPS, PaymentStore
from hal import ecr_proto as ecr
from hal.edc import EdcEvent, EdcLink, EdcReply

log = logging.getLogger(__name__)

# payment states
CHARGING = "charging"  # prepay: the sale is out, the pump waits for it
DELIVERING = "delivering"  # the session it pays for is open
SETTLING = "settling"  # delivery known: charge it (postpay) or give back the rest
ORPHAN = "orphan"  # no delivery will come: any approved charge goes back
DONE = "done"


# step states
SENT = "sent"
UNKNOWN = "unknown"  # sent, the answer never came: ask the terminal before anything else
ANSWERED = "answered"
NOT_RECEIVED = "NR"  # response code of a step the terminal says it never did (inquiry)

KIND_TYPES = {"sale": ecr.SALE, "qris_sale": ecr.QRIS_SALE, "void": ecr.VOID, "refund": ecr.REFUND,
              "inquiry": ecr.INQUIRY}
RETRY_S = 5.0
HOLD_AFTER_REFUSAL_S = 60.0


@dataclass(frozen=True)
class PaymentChoice:
    method: str = "cash"  # cash | card | qris
    mode: str = "postpay"  # prepay | postpay
    amount_idr: int = 0  # prepay: what the customer hands over up front

    @property
    def electronic(self) -> bool:
        return self.method in ("card", "qris")

    @classmethod
    def parse(cls, text: str) -> PaymentChoice:
        """'cash', 'card', 'card_postpay', 'qris_prepay:50000' ..."""
        head, _, amount = text.strip().partition(":")
        method, _, mode = head.partition("_")
        mode = mode or ("prepay" if amount else "postpay")
        if method not in ("cash", "card", "qris") or mode not in ("prepay", "postpay"):
            raise ValueError(f"payment {text!r}: expected cash, card[_postpay|_prepay:IDR] or qris[...]")
        if method == "cash":
            return cls()
        if mode == "prepay":
            if not amount.isdigit() or not 0 < int(amount) <= 99_999_999:
                raise ValueError(f"payment {text!r}: prepay needs an amount in Rupiah, e.g. card_prepay:50000")
            return cls(method, mode, int(amount))
        return cls(method, mode)


CASH = PaymentChoice()


def preset_for_amount(amount: int, price_idr_per_l: int, pulses_per_litre: int) -> int:
    """Millilitres a prepaid amount buys, rounded down to whole meter pulses, so the fill
    can never cost more than was paid (amount_idr of the result <= amount)."""
    if price_idr_per_l <= 0:
        return 0
    ml = amount * 1000 // price_idr_per_l
    return ml * pulses_per_litre // 1000 * 1000 // pulses_per_litre


def next_compensation(net: int, target: int, sale_invoice: str, void_ok: bool) -> tuple[str, int] | None:
    """What to ask the terminal to bring the net charge down to the target: a void of the
    whole sale when nothing is owed and it may still be voided, else a refund of the rest."""
    if net <= target or not sale_invoice:
        return None
    if target == 0 and void_ok:
        return ("void", net)
    return ("refund", net - target)


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class PaymentDesk:
    """Runs in the station's event loop; the terminal driver's events come in through it."""

    def __init__(self, journal: Journal, terminal: Any, zone: str,
                 say: Callable[[str, int, dict[str, Any]], None], emit: Callable[[dict[str, Any]], None],
                 open_prepaid: Callable[[int, str, int, int], bool],
                 publish_record: Callable[[sqlite3.Connection, dict[str, Any]], None],
                 scan_payments: tuple[PaymentChoice, ...] = (), lang: str = "id",
                 show: Callable[[str], None] | None = None, pumps: tuple[int, ...] = ()) -> None:
        self.journal = journal
        self.lang = lang
        self._show = show or (lambda text: None)
        self.terminal = terminal  # hal.edc.EdcTerminal, or None: cash only
        self.zone_hours = ZONES.get(zone, 7)
        self._say = say
        self._emit = emit
        self._open_prepaid = open_prepaid
        self._publish_record = publish_record
        self._scan_payments = scan_payments
        self._scan_count = 0
        self._selected: dict[int, PaymentChoice] = {}
        self._in_flight: int | None = None  # step id out at the terminal
        self._dirty = True
        self._next_try = 0.0
        self._held: dict[int, float] = {}  # pay_id -> monotonic time before which it waits
        # One desk per island terminal (agent/islands.py): each works only its own pumps' payments.
        self.store = PaymentStore(journal, pumps)
        self._scan_texts: dict[int, str] = {}  # pay_id -> the QR a prepayment waits to authorise
        self._written = 0  # the journal's number of the desk's latest commit

    # --- what the station asks ---------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.terminal is not None and bool(self.terminal.connected)

    def select(self, pump: int, choice: PaymentChoice) -> None:
        """The attendant picked how the next customer on this pump pays."""
        self._selected[pump] = choice

    def take_choice(self, pump: int) -> PaymentChoice:
        if pump in self._selected:
            return self._selected.pop(pump)
        if self._scan_payments:
            self._scan_count += 1
            return self._scan_payments[(self._scan_count - 1) % len(self._scan_payments)]
        return CASH

    def wants_tick(self) -> bool:
        """Work is waiting on the terminal: the station loop should come round soon."""
        return self.terminal is not None and (self._in_flight is not None or self._dirty)

    def payment_for_tx(self, tx_id: str) -> dict[str, Any] | None:
        """The card/QRIS payment of a fill (None: paid in cash), `settled` once done."""
        row = self.store.latest_for_tx(tx_id)
        if row is None:
            return None
        return {**self.payment_object(int(row[0])), "settled": row[1] == DONE}

    def busy(self, pump: int) -> bool:
        return self.store.charging_on(pump)

    def start_prepay(self, pump: int, scan_text: str, choice: PaymentChoice, charge: int, preset_ml: int) -> None:
        with self._write(urgent=True) as db:
            # The QR's text stays in memory only (no token at rest): after a crash a prepayment
            # without its session is refunded, never re-authorised, so it is not needed again.
            pay_id = self._insert_payment(db, pump, choice, CHARGING, None, preset_ml, "")
            self._insert_step(db, pay_id, "qris_sale" if choice.method == "qris" else "sale", charge)
        self._scan_texts[pay_id] = scan_text
        self._dirty = True
        killpoint("pay_before_charge")
        self._say("paying", pump, {"amount_idr": charge, "preset_ml": preset_ml})
        self._emit({"type": "payment", "pump": pump, "state": CHARGING, "amount_idr": charge})

    def link_prepaid(self, pay_id: int) -> Callable[[sqlite3.Connection, int, str], None]:
        def link(db: sqlite3.Connection, seq: int, tx_id: str) -> None:
            db.execute("UPDATE payments SET tx_id=?, state=? WHERE pay_id=? AND state=?",
                       (tx_id, DELIVERING, pay_id, CHARGING))
        return link

    def postpay_with_session(self, pump: int, choice: PaymentChoice,
                             preset_ml: int) -> Callable[[sqlite3.Connection, int, str], None]:
        """The journal hook that opens a postpayment in the session's own transaction: one
        sync before the relay closes, not two, and never a session without its payment."""
        def open_payment(db: sqlite3.Connection, seq: int, tx_id: str) -> None:
            self._insert_payment(db, pump, choice, DELIVERING, tx_id, preset_ml, "")
        return open_payment

    def open_postpay(self, session: SessionRow, choice: PaymentChoice) -> None:
        """A postpayment chosen while the fill runs (the attendant's 'pay by card')."""
        # A crash before this row leaves a session without a payment: it is paid in cash,
        # never charged twice.
        with self._write() as db:
            self._insert_payment(db, session.pump, choice, DELIVERING, session.tx_id, session.preset_ml, "")

    def on_close(self, session: SessionRow, dispensed_ml: int, amount: int,
                 record: dict[str, Any]) -> Callable[[sqlite3.Connection], None] | None:
        """The session is closing. Cash: fill in the record's payment and return None (the
        record goes out now). Card/QRIS: return the journal hook that keeps the record with
        the payment until it settles."""
        row = self.store.delivering_for(session.tx_id)
        if row is None:
            record["payment"] = cash_payment(amount)
            return None
        pay_id = int(row[0])
        record["payment"] = {"method": row[1], "mode": row[2], "status": "unpaid", "amount_idr": 0,
                             "approval_code": None, "rrn": None, "steps": []}

        def keep(db: sqlite3.Connection) -> None:
            db.execute("UPDATE payments SET state=?, target_idr=?, dispensed_ml=?, record=? WHERE pay_id=?",
                       (SETTLING, amount, dispensed_ml, json.dumps(record), pay_id))
        self._dirty = True
        return keep

    # --- boot ---------------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: unanswered steps are unknown (ask before acting); a prepayment
        whose pump never got its session will never get it (no re-authorisation after a
        restart), so whatever it charged goes back."""
        with self._write() as db:
            db.execute(f"UPDATE payment_steps SET state='unknown' WHERE {OPEN_STEPS} AND state='sent'")
            db.execute(f"UPDATE payments SET state='orphan', target_idr=0 WHERE {OPEN_PAYMENTS} AND state='charging'")
            # a prepayment approved and journaled, but the crash came before its session opened
            db.execute(f"UPDATE payments SET state='orphan', target_idr=0 WHERE {OPEN_PAYMENTS}"
                       " AND state='delivering' AND tx_id IS NULL")
        self._dirty = True

    # --- the work loop ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if self.terminal is None or self._in_flight is not None:
            return
        if not self._dirty and now < self._next_try:
            return
        if not self.available:
            self._give_up_waiting()
            self._next_try = now + 1.0
            return
        if not self.terminal.idle:
            self._next_try = now + 1.0
            return
        if not self._written_durable():
            return  # the journal's sync thread wakes the station loop when it is
        self._dirty = False
        self._next_try = now + RETRY_S
        unknown = self.store.first_open_step(UNKNOWN)
        if unknown is not None:
            self._send_inquiry(unknown)
            return
        pending = self.store.first_open_step(SENT)
        if pending is not None:  # journaled, never handed over (written just now, or before a crash)
            self._send(pending)
            return
        for pay_id in self.store.open_payments(SETTLING, ORPHAN):
            if self._held.get(int(pay_id), 0.0) > now:
                continue  # its last void/refund was refused: try again later, others go on
            if self._advance(int(pay_id)):
                return

    def _give_up_waiting(self) -> None:
        """The terminal is gone while a customer waits on it: a prepaying customer whose
        answer is unknown, or a postpaying one not charged yet, is offered cash now; what the
        terminal did is asked and given back when it returns."""
        for pay_id, state, mode in self.store.waiting_customers():
            steps = self._steps(int(pay_id))
            if state == CHARGING and any(s["state"] == UNKNOWN for s in steps):
                self._abandon_prepay(self._payment(int(pay_id)), "edc_unavailable")
            elif state == SETTLING and mode == "postpay" and not any(
                    s["kind"] in ("sale", "qris_sale") and s["response_code"] == ecr.APPROVED for s in steps):
                self._cash_fallback(int(pay_id))

    def _advance(self, pay_id: int) -> bool:
        """Next request for a settling or orphaned payment; True if one went out."""
        pay = self._payment(pay_id)
        steps = self._steps(pay_id)
        net = net_charged(steps)
        target = int(pay["target_idr"] or 0)
        sales = [s for s in steps if s["kind"] in ("sale", "qris_sale")]
        if pay["mode"] == "postpay" and pay["state"] == SETTLING and not sales and target > 0:
            with self._write(urgent=True) as db:
                self._insert_step(db, pay_id, "qris_sale" if pay["method"] == "qris" else "sale", target)
            self._dirty = True
            killpoint("pay_before_charge")
            self.tick(time.monotonic())
            return True
        approved = [s for s in sales if s["response_code"] == ecr.APPROVED]
        sale = approved[0] if approved else None
        void_tried = any(s["kind"] == "void" for s in steps)
        void_ok = sale is not None and not void_tried and self._same_day(sale["at"])
        action = next_compensation(net, target, sale["invoice"] if sale else "", void_ok)
        if action is None:
            self._finish(pay_id)
            return False
        kind, amount = action
        with self._write(urgent=True) as db:
            self._insert_step(db, pay_id, kind, amount, invoice=sale["invoice"] if sale else "")
        killpoint("pay_before_compensation")
        self.tick(time.monotonic())  # sent once its row is on the card
        return True

    def _same_day(self, iso: str) -> bool:
        offset = dt.timedelta(hours=self.zone_hours)
        at = dt.datetime.fromisoformat(iso) + offset
        return at.date() == (dt.datetime.now(dt.UTC) + offset).date()

    def _send(self, step_id: int) -> None:
        step = self._step(step_id)
        request = ecr.Message(KIND_TYPES[step["kind"]], int(step["amount_idr"]), step["ecr_ref"],
                              step["invoice"] or "000000")
        self._in_flight = step_id
        self.terminal.submit(request)
        killpoint("pay_charge_sent" if step["kind"] in ("sale", "qris_sale") else "pay_compensation_sent")

    def _send_inquiry(self, step_id: int) -> None:
        self._in_flight = -step_id  # negative: an inquiry about that step
        self.terminal.submit(ecr.Message(ecr.INQUIRY))

    # --- answers ------------------------------------------------------------------------

    def on_event(self, event: EdcEvent) -> None:
        if isinstance(event, EdcLink):
            self._dirty = True
            if not event.connected and self._in_flight is not None:
                self._lost()
            return
        assert isinstance(event, EdcReply)
        if event.outcome == "stray":
            self._stray(event.answer)
            return
        in_flight, self._in_flight = self._in_flight, None
        self._dirty = True
        if in_flight is None:
            return
        if in_flight < 0:
            self._inquiry_answer(-in_flight, event.answer if event.outcome == "response" else None)
            return
        if event.outcome != "response" or event.answer is None:
            self._mark_unknown(in_flight)
            return
        if event.answer.approved:
            killpoint("pay_approval_received")
        self._answered(in_flight, event.answer)

    def _lost(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and in_flight > 0:
            self._mark_unknown(in_flight)

    def _mark_unknown(self, step_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE payment_steps SET state=? WHERE step_id=? AND state=?", (UNKNOWN, step_id, SENT))
        step = self._step(step_id)
        pay = self._payment(int(step["pay_id"]))
        self._say("payment_checking", int(pay["pump"]), {})

    def _stray(self, answer: ecr.Message | None) -> None:
        if answer is None:
            return
        row = self.store.step_by_ref(answer.ecr_ref)
        if row is not None and row[1] in (UNKNOWN, SENT) and int(row[0]) != self._in_flight:
            log.warning("late answer for %s applied", answer.ecr_ref)
            self._answered(int(row[0]), answer)
        self._dirty = True

    def _inquiry_answer(self, step_id: int, answer: ecr.Message | None) -> None:
        step = self._step(step_id)
        if answer is None:
            # The terminal does not answer even that: a prepaying customer is offered cash;
            # whatever the terminal did is found out and given back later.
            pay = self._payment(int(step["pay_id"]))
            if pay["state"] == CHARGING:
                self._abandon_prepay(pay, "edc_unavailable")
            elif pay["state"] == SETTLING and pay["mode"] == "postpay":
                self._cash_fallback(int(pay["pay_id"]))
            self._dirty = False  # ask again in RETRY_S, not at once
            self._next_try = time.monotonic() + RETRY_S
            return
        with self._write() as db:
            self._insert_answered(db, int(step["pay_id"]), "inquiry", answer.amount_idr, answer)
        if step["state"] != UNKNOWN:
            return
        if answer.ecr_ref == step["ecr_ref"] and answer.trans_type == KIND_TYPES[step["kind"]]:
            self._answered(step_id, answer)
        else:
            # The last thing the terminal did is not this request: it never did it.
            self._answered(step_id, ecr.Message(KIND_TYPES[step["kind"]], int(step["amount_idr"]), step["ecr_ref"],
                                                response=NOT_RECEIVED))

    def _answered(self, step_id: int, answer: ecr.Message) -> None:
        with self._write() as db:
            db.execute("UPDATE payment_steps SET state=?, response_code=?, approval_code=?, rrn=?, invoice=?, at=?"
                       " WHERE step_id=?",
                       (ANSWERED, answer.response, answer.approval or None, answer.rrn or None,
                        answer.invoice if answer.approved and answer.trans_type in (ecr.SALE, ecr.QRIS_SALE)
                        else self._step(step_id)["invoice"], _iso_now(), step_id))
        step = self._step(step_id)
        killpoint("pay_approval_journaled" if step["kind"] in ("sale", "qris_sale") else "pay_compensation_journaled")
        pay = self._payment(int(step["pay_id"]))
        pump = int(pay["pump"])
        self._emit({"type": "payment", "pump": pump, "kind": step["kind"], "amount_idr": int(step["amount_idr"]),
                    "response_code": answer.response, "approved": answer.approved})
        if step["kind"] in ("sale", "qris_sale"):
            if pay["state"] == CHARGING:
                if answer.approved:
                    self._say("payment_approved", pump, {"amount_idr": int(step["amount_idr"]),
                                                         "detail": answer.approval})
                    try:
                        text = self._scan_texts.pop(int(pay["pay_id"]), "")
                        opened = bool(text) and self._open_prepaid(pump, text, int(pay["preset_ml"]),
                                                                   int(pay["pay_id"]))
                    except Exception:  # whatever went wrong, the charge must not be left standing
                        log.exception("authorising prepayment %s failed", pay["pay_id"])
                        opened = False
                    if not opened:
                        self._orphan(int(pay["pay_id"]))
                else:
                    self._abandon_prepay(pay, "payment_declined", answer.response)
            elif pay["state"] == SETTLING and not answer.approved:
                self._cash_fallback(int(pay["pay_id"]), answer.response)
        elif not answer.approved and answer.response != NOT_RECEIVED:
            # A refusal waits before the next try; a step the terminal never received (found
            # by the inquiry after a restart) is simply sent again.
            self._emit({"type": "alert", "alert": "compensation_refused", "pump": pump,
                        "detail": f"{step['kind']} {step['ecr_ref']} answered {answer.response}"})
            if step["kind"] == "refund":  # a refused void is followed by a refund at once
                self._held[int(pay["pay_id"])] = time.monotonic() + HOLD_AFTER_REFUSAL_S
        self._dirty = True

    def _orphan(self, pay_id: int) -> None:
        with self._write() as db:
            db.execute("UPDATE payments SET state=?, target_idr=0 WHERE pay_id=?", (ORPHAN, pay_id))

    def _abandon_prepay(self, pay: dict[str, Any], reason: str, code: str = "") -> None:
        with self._write() as db:
            db.execute("UPDATE payments SET state=?, target_idr=0, status=? WHERE pay_id=?",
                       (ORPHAN, "declined" if code else "unpaid", pay["pay_id"]))
        text = ecr.RESPONSE_TEXT.get(code, code)
        self._say(reason, int(pay["pump"]), {"detail": f"{code} {text}".strip()})
        self._emit({"type": "decision", "pump": int(pay["pump"]), "ok": False, "reason": reason, "code": reason,
                    "detail": code, "plate": "", "product": "", "preset_ml": 0, "remaining_ml": 0})

    def _cash_fallback(self, pay_id: int, code: str = "") -> None:
        """Postpay the card did not pay: the attendant collects cash; anything the terminal
        charged after all goes back."""
        pay = self._payment(pay_id)
        with self._write() as db:
            db.execute("UPDATE payments SET state=?, final_method='cash', status=? WHERE pay_id=?",
                       (ORPHAN, "declined" if code and code != NOT_RECEIVED else "unpaid", pay_id))
            db.execute("UPDATE payments SET target_idr=0 WHERE pay_id=?", (pay_id,))
        text = ecr.RESPONSE_TEXT.get(code, "")
        self._say("payment_cash", int(pay["pump"]), {"amount_idr": int(pay["target_idr"] or 0),
                                                     "detail": f"{code} {text}".strip()})
        self._publish(pay_id)

    # --- settlement ---------------------------------------------------------------------

    def _finish(self, pay_id: int) -> None:
        pay = self._payment(pay_id)
        self._publish(pay_id)
        with self._write() as db:
            db.execute("UPDATE payments SET state=? WHERE pay_id=?", (DONE, pay_id))
        killpoint("pay_settled")
        steps = self._steps(pay_id)
        if pay["state"] == ORPHAN and net_charged(steps) == 0 and any(
                s["response_code"] == ecr.APPROVED for s in steps if s["kind"] in ("void", "refund")):
            self._emit({"type": "payment", "pump": int(pay["pump"]), "state": "compensated",
                        "steps": len(steps)})

    def _publish(self, pay_id: int) -> None:
        """Queue the kept-back transaction record with its final payment object (once)."""
        pay = self._payment(pay_id)
        if not pay["record"]:
            return
        record = json.loads(pay["record"])
        record["payment"] = self.payment_object(pay_id)
        with self._write() as db:
            self._publish_record(db, record)
            db.execute("UPDATE payments SET record=NULL WHERE pay_id=?", (pay_id,))
        text = render_receipt(record, self.lang)
        self._show(text)
        self._emit({"type": "receipt", "pump": int(pay["pump"]), "tx_id": record["tx_id"],
                    "payment": record["payment"], "amount_idr": record["amount_idr"],
                    "dispensed_ml": record["dispensed_ml"], "text": text})

    def payment_of(self, tx_id: str) -> dict[str, Any] | None:
        """The payment object of a sale paid by card or QRIS (None: no such payment, cash)."""
        row = self.store.latest_for_tx(tx_id)
        return None if row is None else self.payment_object(int(row[0]))

    def payment_object(self, pay_id: int) -> dict[str, Any]:
        pay = self._payment(pay_id)
        steps = self._steps(pay_id)
        answered = [s for s in steps if s["state"] == ANSWERED]
        net = net_charged(steps)
        sale = next((s for s in answered if s["kind"] in ("sale", "qris_sale")
                     and s["response_code"] == ecr.APPROVED), None)
        method = pay["final_method"] or pay["method"]
        if pay["status"] and method == "cash":
            status = str(pay["status"])
        elif net > 0:
            status = "paid"
        elif any(s["kind"] == "void" and s["response_code"] == ecr.APPROVED for s in answered):
            status = "voided"
        elif any(s["kind"] == "refund" and s["response_code"] == ecr.APPROVED for s in answered):
            status = "refunded"
        elif any(s["kind"] in ("sale", "qris_sale") and s["response_code"] not in (ecr.APPROVED, NOT_RECEIVED)
                 for s in answered):
            status = "declined"
        else:
            status = "unpaid"
        return {
            "method": method, "mode": pay["mode"], "status": status, "amount_idr": net,
            "approval_code": sale["approval_code"] if sale else None, "rrn": sale["rrn"] if sale else None,
            "steps": [{"kind": "sale" if s["kind"] == "qris_sale" else s["kind"], "amount_idr": int(s["amount_idr"]),
                       "response_code": s["response_code"], "approval_code": s["approval_code"],
                       "rrn": s["rrn"], "at": s["at"]} for s in answered],
        }

    # --- journal rows -------------------------------------------------------------------

    @contextmanager
    def _write(self, urgent: bool = False) -> Iterator[sqlite3.Connection]:
        """Every write of the desk: committed without stalling the station loop on the card
        (the journal's sync thread makes it durable: `urgent` for a request the terminal
        waits for, else within the group-commit window, which the next urgent or scan's
        sync cuts short); `_written_durable` gates what goes to the terminal on it."""
        before = self.journal.last_commit
        with self.journal.lazy(urgent) as db:
            yield db
        if self.journal.last_commit != before:  # it wrote something (else it is not a commit of ours)
            self._written = self.journal.last_commit

    def _written_durable(self) -> bool:
        """Everything the desk wrote is on the card: a request may go to the terminal (a
        step row lost to a power cut after its request went out would be a charge nobody
        knows of)."""
        return self.journal.is_durable(self._written)

    def _insert_payment(self, db: sqlite3.Connection, pump: int, choice: PaymentChoice, state: str,
                        tx_id: str | None, preset_ml: int, scan_text: str) -> int:
        return self.store.insert_payment(db, pump, choice.method, choice.mode, state, tx_id, preset_ml, scan_text)

    def _insert_step(self, db: sqlite3.Connection, pay_id: int, kind: str, amount: int, invoice: str = "") -> int:
        self._dirty = True
        return self.store.insert_step(db, pay_id, kind, amount, invoice)

    def _insert_answered(self, db: sqlite3.Connection, pay_id: int, kind: str, amount: int,
                         answer: ecr.Message) -> None:
        step_id = self._insert_step(db, pay_id, kind, amount)
        db.execute("UPDATE payment_steps SET state=?, response_code=?, approval_code=?, rrn=? WHERE step_id=?",
                   (ANSWERED, answer.response, answer.approval or None, answer.rrn or None, step_id))

    def _payment(self, pay_id: int) -> dict[str, Any]:
        return self.store.payment(pay_id)

    def _steps(self, pay_id: int) -> list[dict[str, Any]]:
        return self.store.steps(pay_id)

    def _step(self, step_id: int) -> dict[str, Any]:
        return self.store.step(step_id)


def net_charged(steps: list[dict[str, Any]]) -> int:
    """What the terminal still holds from the customer: approved sales less approved voids
    (the whole sale) and refunds. Steps still unknown count as approved until asked."""
    net = 0
    sales = {}
    for s in steps:
        approved = s["response_code"] == ecr.APPROVED or s["state"] == UNKNOWN
        if s["kind"] in ("sale", "qris_sale") and approved:
            net += int(s["amount_idr"])
            sales[s["invoice"]] = int(s["amount_idr"])
        elif s["kind"] == "void" and s["response_code"] == ecr.APPROVED:
            net -= sales.get(s["invoice"], int(s["amount_idr"]))
        elif s["kind"] == "refund" and s["response_code"] == ecr.APPROVED:
            net -= int(s["amount_idr"])
    return max(net, 0)


def cash_payment(amount: int) -> dict[str, Any]:
    """Cash: nothing electronic; the attendant collects `amount_idr` of the record."""
    return {"method": "cash", "mode": "postpay", "status": "unpaid", "amount_idr": 0,
            "approval_code": None, "rrn": None, "steps": []}


def prepay_charge(choice: PaymentChoice, price: int, pulses_per_litre: int, quota_preset_ml: int) -> tuple[int, int]:
    """(Rupiah to charge, preset ml) for a prepayment: what the amount buys, capped by the
    quota, charged at exactly what that preset costs."""
    ml = min(preset_for_amount(choice.amount_idr, price, pulses_per_litre), quota_preset_ml)
    ml = ml * pulses_per_litre // 1000 * 1000 // pulses_per_litre
    return amount_idr(ml, price), ml
