"""Payments end to end: the agent's event loop, the EDC terminal simulator on a pseudo-
terminal (the same ECR codec), the relay board with its dispensers, a private broker.

What a payment did is read from the terminal's own ledger (its batch) and compared with
the metered fuel in the journal; the transaction record headquarters receives is checked
against the schema."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli.demo import Customer, DemoStation, Outcome, _pick, serve_customers
from agent.config import EdcConfig, StationConfig, Timeouts
from agent.payments.audit import unmatched_details
from agent.payments.desk import PaymentChoice
from agent.station import PaymentSelect, Station
from hal import ecr_proto as ecr
from simulators.broker import MosquittoBroker
from tests.conftest import validate
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


class PayStation(DemoStation):
    """One Pertalite pump, an EDC terminal, short timeouts so lost answers resolve quickly."""

    def config(self) -> StationConfig:
        assert self.edc is not None
        return dataclasses.replace(
            super().config(), timeouts=Timeouts(scan_to_nozzle_s=1.5, no_flow_s=5, duplicate_scan_s=0.2),
            edc=EdcConfig(self.edc.path, ack_timeout_s=0.3, max_retries=3, response_timeout_s=1.5))


@pytest.fixture
def station(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[PayStation]:
    demo = PayStation(pumps=1, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, edc=True, flow_lps=20.0)
    demo.start()
    yield demo
    demo.close()


_used: set[int] = set()


def customer(demo: DemoStation, payment: str, want_ml: int, script: tuple[str, ...] = (),
             expect: str = "ok") -> Customer:
    car = _pick(demo.registry, _used, "private_car", 0x01)
    return Customer("test", 1, demo.token(car.vehicle_id), want_ml, expect, payment, script)


def serve(demo: DemoStation, who: Customer) -> Outcome:
    outcomes: list[Outcome] = []
    serve_customers([who], demo.scanners[1], demo.board, 0, demo.tracker, outcomes, demo._stop,
                    demo.station, demo.edc)
    return outcomes[0]


def tx_at_hq(demo: DemoStation, tx_id: str) -> dict[str, Any]:
    assert demo.hq is not None
    hq = demo.hq
    assert wait_until(lambda: any(t["tx_id"] == tx_id for t in hq.transactions()), 10)
    record = next(t for t in hq.transactions() if t["tx_id"] == tx_id)
    validate("tx", record)
    return record


def audit(demo: DemoStation) -> list[str]:
    assert demo.edc is not None
    return unmatched_details(demo.edc.ledger(), demo.journal_path)


def approved_sales(demo: DemoStation) -> list[dict[str, Any]]:
    assert demo.edc is not None
    return [r for r in demo.edc.ledger() if r["type"] == ecr.SALE and r["response"] == ecr.APPROVED]


def payment_states(demo: DemoStation) -> list[str]:
    db = sqlite3.connect(f"file:{demo.journal_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT state FROM payments ORDER BY pay_id")]
    finally:
        db.close()


def test_card_postpay_charges_the_metered_amount(station: PayStation) -> None:
    out = serve(station, customer(station, "card", 8_000))
    assert out.transaction is not None and out.receipt is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert (pay["method"], pay["mode"], pay["status"]) == ("card", "postpay", "paid")
    assert record["dispensed_ml"] >= 8_000 and pay["amount_idr"] == record["amount_idr"] > 0
    (sale,) = approved_sales(station)
    assert sale["amount"] == record["amount_idr"] and sale["approval"] == pay["approval_code"]
    assert [s["kind"] for s in pay["steps"]] == ["sale"] and pay["steps"][0]["response_code"] == "00"
    assert audit(station) == []
    assert "Rp" in out.receipt["text"] and sale["approval"] in out.receipt["text"]


def test_prepay_partial_fill_refunds_the_difference(station: PayStation) -> None:
    out = serve(station, customer(station, "card_prepay:50000", 2_000))
    assert out.decision is not None and out.decision["ok"] and out.decision["preset_ml"] == 5_000
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert pay["mode"] == "prepay" and pay["status"] == "paid"
    assert [s["kind"] for s in pay["steps"]] == ["sale", "refund"]
    assert pay["steps"][0]["amount_idr"] == 50_000
    assert pay["steps"][1]["amount_idr"] == 50_000 - record["amount_idr"]
    assert station.edc is not None
    assert station.edc.net_charged() == {approved_sales(station)[0]["ecr_ref"]: record["amount_idr"]}
    assert pay["amount_idr"] == record["amount_idr"]
    assert audit(station) == []


def test_prepay_preset_never_costs_more_than_paid(station: PayStation) -> None:
    # Rp 33.333 buys 3.333 L: the pulser presets 3.33 L, charged at exactly what that costs
    out = serve(station, customer(station, "card_prepay:33333", 50_000))
    assert out.decision is not None and out.decision["preset_ml"] == 3_330
    (sale,) = approved_sales(station)
    assert sale["amount"] == 33_300
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    assert record["amount_idr"] <= 33_300 + 200  # the valve's overrun is the only excess
    assert audit(station) == []


def test_prepay_nothing_delivered_is_voided(station: PayStation) -> None:
    who = customer(station, "card_prepay:40000", 0)
    assert station.station is not None and station.edc is not None
    station.station.events.put(PaymentSelect(1, PaymentChoice.parse(who.payment)))
    station.scanners[1].scan(who.qr)
    decision = station.tracker.next(1, "decision", 5)
    assert decision is not None and decision["ok"]
    # the customer drives away: the scan-to-nozzle timeout ends the session with 0 L
    transaction = station.tracker.next(1, "transaction", 10)
    receipt = station.tracker.next(1, "receipt", 10)
    assert transaction is not None and transaction["dispensed_ml"] == 0 and receipt is not None
    record = tx_at_hq(station, transaction["tx_id"])
    assert record["payment"]["status"] == "voided" and record["payment"]["amount_idr"] == 0
    assert [s["kind"] for s in record["payment"]["steps"]] == ["sale", "void"]
    assert station.edc.ledger()[0]["voided"] is True
    assert audit(station) == []


def test_prepay_declined_never_authorises(station: PayStation) -> None:
    out = serve(station, customer(station, "card_prepay:50000", 5_000, ("decline:55",), expect="payment_declined"))
    assert out.decision is not None and not out.decision["ok"] and out.decision["reason"] == "payment_declined"
    assert not station.board.relay_closed(0)
    assert station.station is not None and station.station.pumps[1].session is None
    assert approved_sales(station) == [] and audit(station) == []
    assert any("55" in line for line in station.lines)
    # the pump is free again: the next customer pays cash
    cash = serve(station, customer(station, "cash", 1_000))
    assert cash.decision is not None and cash.decision["ok"]


def test_postpay_declined_falls_back_to_cash(station: PayStation) -> None:
    out = serve(station, customer(station, "card", 3_000, ("decline:51",)))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert (pay["method"], pay["status"], pay["amount_idr"]) == ("cash", "declined", 0)
    assert pay["steps"][0]["response_code"] == "51"
    assert approved_sales(station) == []


def test_lost_response_is_asked_for_not_charged_again(station: PayStation) -> None:
    # The terminal charges, then is power-cycled before it answers: the agent's response
    # timeout expires, it asks for the last transaction and takes that approval.
    out = serve(station, customer(station, "card", 4_000, ("power_cycle:1.0",)))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert pay["status"] == "paid" and pay["amount_idr"] == record["amount_idr"]
    kinds = [s["kind"] for s in pay["steps"]]
    assert "inquiry" in kinds
    assert len(approved_sales(station)) == 1  # exactly one charge
    assert station.edc is not None
    assert sum(1 for r in station.edc.requests if r.trans_type == ecr.SALE) == 1
    assert audit(station) == []


def test_request_never_processed_is_not_paid_and_not_retried(station: PayStation) -> None:
    # ACKed, then silence and no record at the terminal: the inquiry shows the last thing it
    # did was something else, so the card was never charged; cash is collected.
    out = serve(station, customer(station, "card", 2_000, ("no_answer",)))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert (pay["method"], pay["status"]) == ("cash", "unpaid")
    assert [s["response_code"] for s in pay["steps"] if s["kind"] == "sale"] == ["NR"]
    assert station.edc is not None
    assert sum(1 for r in station.edc.requests if r.trans_type == ecr.SALE) == 1
    assert approved_sales(station) == []


def test_nak_bursts_and_garbled_frames_still_charge_once(station: PayStation) -> None:
    out = serve(station, customer(station, "card", 2_000, ("nak:2", "garble")))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    assert record["payment"]["status"] == "paid"
    assert len(approved_sales(station)) == 1 and audit(station) == []


def test_terminal_unreachable_offers_cash(station: PayStation) -> None:
    assert station.edc is not None and station.station is not None
    station.edc.close()  # the terminal is unplugged
    assert wait_until(lambda: station.station is not None and not station.station.payments.available, 5)
    out = serve(station, customer(station, "card_prepay:50000", 1_000, expect="edc_unavailable"))
    assert out.decision is not None and out.decision["reason"] == "edc_unavailable"
    assert not station.board.relay_closed(0)
    cash = serve(station, customer(station, "cash", 1_000))
    assert cash.transaction is not None
    assert tx_at_hq(station, cash.transaction["tx_id"])["payment"]["method"] == "cash"


def test_restart_while_charging_voids_the_approval(station: PayStation) -> None:
    """The agent stops while the customer types the PIN; the terminal approves meanwhile.
    The restarted agent never authorises the pump by itself: it asks the terminal, finds
    the approval and voids it."""
    assert station.station is not None and station.edc is not None
    who = customer(station, "card_prepay:30000", 1_000, ("slow:1.0",))
    station.edc.script(*who.edc_script)
    station.station.events.put(PaymentSelect(1, PaymentChoice.parse(who.payment)))
    station.scanners[1].scan(who.qr)
    assert wait_until(lambda: payment_states(station) == ["charging"], 5)
    edc = station.edc
    assert wait_until(lambda: len(edc.requests) == 1, 5)  # the customer is at the PIN pad
    station._stop.set()
    assert station._thread is not None
    station._thread.join(5)
    station.station.close()  # stopped before the approval came
    assert wait_until(lambda: len(approved_sales(station)) == 1, 5)
    restarted = Station(station.config(), on_line=station.lines.append, listeners=[station.tracker])
    restarted.start()
    station.station = restarted
    station._stop.clear()
    import threading

    station._thread = threading.Thread(target=restarted.run, args=(station._stop,), daemon=True)
    station._thread.start()
    assert wait_until(lambda: payment_states(station) == ["done"], 15)
    assert station.edc.net_charged() == {approved_sales(station)[0]["ecr_ref"]: 0}
    assert audit(station) == []
    assert not station.board.relay_closed(0)
    time.sleep(0.2)
    assert len(station.board.accepted()) == 0  # the pump was never authorised


def test_terminal_gone_after_fuelling_cash_then_checked_later(station: PayStation) -> None:
    # Deaf for 3 s from the postpay sale on: neither the sale nor the inquiry is ACKed, so
    # the attendant collects cash; when the terminal is back the agent asks again, learns
    # the sale never happened, and settles without a second charge.
    out = serve(station, customer(station, "card", 2_000, ("offline:3",)))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    assert (record["payment"]["method"], record["payment"]["status"]) == ("cash", "unpaid")
    assert any(line.startswith("TUNAI") for line in station.lines)  # the attendant is told
    assert wait_until(lambda: payment_states(station) == ["done"], 15)
    assert approved_sales(station) == [] and audit(station) == []


def test_terminal_unplugged_while_the_customer_types_the_pin(station: PayStation) -> None:
    assert station.edc is not None and station.station is not None
    who = customer(station, "card_prepay:30000", 1_000, ("slow:3",))
    station.edc.script(*who.edc_script)
    station.station.events.put(PaymentSelect(1, PaymentChoice.parse(who.payment)))
    station.scanners[1].scan(who.qr)
    assert wait_until(lambda: payment_states(station) == ["charging"], 5)
    edc = station.edc
    assert wait_until(lambda: len(edc.requests) == 1, 5)  # the customer is at the PIN pad
    station.edc.close()  # unplugged before it answered
    decision = station.tracker.next(1, "decision", 10)
    assert decision is not None and not decision["ok"] and decision["reason"] == "edc_unavailable"
    assert payment_states(station) == ["orphan"]  # whatever it charged goes back once it returns
    assert station.station.pumps[1].session is None and not station.board.relay_closed(0)
    assert len(station.board.accepted()) == 0


def test_answer_later_than_the_timeout_is_not_charged_twice(station: PayStation) -> None:
    # PIN entry outlasts the response timeout: the agent asks instead of charging again,
    # and the late answer that follows changes nothing.
    out = serve(station, customer(station, "card", 2_000, ("slow:2.5",)))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    assert record["payment"]["status"] == "paid"
    time.sleep(1.5)  # the late answer arrives
    assert station.edc is not None
    assert sum(1 for r in station.edc.requests if r.trans_type == ecr.SALE) == 1
    assert len(approved_sales(station)) == 1 and audit(station) == []
    assert payment_states(station) == ["done"]


def test_qris_prepay_uses_the_qris_sale(station: PayStation) -> None:
    out = serve(station, customer(station, "qris_prepay:20000", 1_000))
    assert out.transaction is not None
    record = tx_at_hq(station, out.transaction["tx_id"])
    pay = record["payment"]
    assert (pay["method"], pay["mode"], pay["status"]) == ("qris", "prepay", "paid")
    assert station.edc is not None
    (sale,) = [r for r in station.edc.ledger() if r["type"] == ecr.QRIS_SALE]
    assert sale["card_type"] == "QRIS" and sale["amount"] == 20_000
    assert station.edc.net_charged() == {sale["ecr_ref"]: record["amount_idr"]}
    assert audit(station) == []


def test_refused_refund_is_held_and_shows_in_the_audit(station: PayStation) -> None:
    # The bank refuses the refund: the payment waits to try again (alerted), the audit of
    # the terminal's ledger shows the charge not yet matched, and other customers go on.
    alerts: list[dict[str, Any]] = []
    assert station.station is not None
    station.station.listeners.append(lambda e: alerts.append(e) if e.get("type") == "alert" else None)
    out = serve(station, customer(station, "card_prepay:50000", 1_000, ("approve", "decline:13")))
    assert out.transaction is not None and out.receipt is None  # not settled: no receipt yet
    assert wait_until(lambda: any(a["alert"] == "compensation_refused" for a in alerts), 5)
    assert payment_states(station) == ["settling"]
    problems = audit(station)
    assert len(problems) == 1 and "terminal holds Rp 50000" in problems[0]
    nxt = serve(station, customer(station, "card", 1_000))
    assert nxt.receipt is not None and nxt.receipt["payment"]["status"] == "paid"
    assert payment_states(station) == ["settling", "done"]


def test_terminal_unplugged_during_the_fill_postpay_goes_to_cash(station: PayStation) -> None:
    assert station.edc is not None and station.station is not None
    who = customer(station, "card", 3_000)
    station.station.events.put(PaymentSelect(1, PaymentChoice.parse(who.payment)))
    station.scanners[1].scan(who.qr)
    decision = station.tracker.next(1, "decision", 5)
    assert decision is not None and decision["ok"]
    station.edc.close()  # unplugged while the customer fuels
    assert wait_until(lambda: station.station is not None and not station.station.payments.available, 5)
    assert wait_until(lambda: station.board.relay_closed(0), 5)
    start = station.board.totaliser_ml(0)
    station.board.lift_nozzle(0)
    assert wait_until(lambda: station.board.totaliser_ml(0) - start >= 1_000, 10)
    station.board.hang_nozzle(0)
    receipt = station.tracker.next(1, "receipt", 10)
    assert receipt is not None and receipt["dispensed_ml"] >= 1_000 and receipt["amount_idr"] > 0
    assert (receipt["payment"]["method"], receipt["payment"]["status"]) == ("cash", "unpaid")
    assert receipt["payment"]["steps"] == []  # nothing was ever sent to the terminal
