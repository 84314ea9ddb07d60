"""Payment logic without devices: prepay presets and Rupiah rounding, what to give back,
payment choices, the [edc] config section and the receipt text."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ConfigError, EdcConfig, load_config, parse_config, render_config
from agent.domain import amount_idr
from agent.payments.desk import (
    CASH,
    PaymentChoice,
    net_charged,
    next_compensation,
    prepay_charge,
    preset_for_amount,
)
from agent.payments.receipt import WIDTH, render_receipt
from tests.agent.test_config import valid

# --- prepay: what an amount buys -------------------------------------------------------


@given(st.integers(1, 10_000_000), st.integers(1, 30_000), st.sampled_from([1, 10, 100, 1000]))
def test_prepaid_preset_never_costs_more_than_paid(amount: int, price: int, ppl: int) -> None:
    ml = preset_for_amount(amount, price, ppl)
    assert ml >= 0 and amount_idr(ml, price) <= amount
    assert ml * ppl % 1000 == 0  # whole meter pulses
    # and it is the most the pulser can preset: one pulse more would cost too much
    one_more = ml + 1000 // ppl
    assert one_more * price > amount * 1000


@given(st.integers(1, 10_000_000), st.integers(1, 30_000), st.integers(0, 200_000))
def test_prepay_charge_is_exactly_the_preset_price(amount: int, price: int, quota_ml: int) -> None:
    charge, ml = prepay_charge(PaymentChoice("card", "prepay", amount), price, 100, quota_ml)
    assert ml <= quota_ml and charge == amount_idr(ml, price) <= amount


def test_rupiah_rounding_examples() -> None:
    assert preset_for_amount(50_000, 10_000, 100) == 5_000
    assert preset_for_amount(50_000, 6_800, 100) == 7_350  # 7.3529 L -> 735 pulses
    assert amount_idr(7_350, 6_800) == 49_980  # so Rp 49.980 is charged, never Rp 50.000
    assert amount_idr(1_005, 10_000) == 10_050
    assert amount_idr(1, 6_800) == 7  # 6.8 rounds half up to the whole Rupiah
    assert preset_for_amount(5, 10_000, 100) == 0


# --- giving back ------------------------------------------------------------------------


def test_compensation_choices() -> None:
    assert next_compensation(50_000, 50_000, "000001", True) is None
    assert next_compensation(50_000, 20_100, "000001", True) == ("refund", 29_900)
    assert next_compensation(50_000, 0, "000001", True) == ("void", 50_000)
    assert next_compensation(50_000, 0, "000001", False) == ("refund", 50_000)  # settled: refund
    assert next_compensation(0, 0, "", True) is None


def step(kind: str, amount: int, code: str = "00", invoice: str = "000001", state: str = "answered") -> dict[str, Any]:
    return {"kind": kind, "amount_idr": amount, "response_code": code, "invoice": invoice, "state": state}


def test_net_charged() -> None:
    assert net_charged([step("sale", 50_000)]) == 50_000
    assert net_charged([step("sale", 50_000, "51")]) == 0
    assert net_charged([step("sale", 50_000), step("refund", 20_000)]) == 30_000
    assert net_charged([step("sale", 50_000), step("refund", 20_000, "13")]) == 50_000
    assert net_charged([step("sale", 50_000), step("void", 50_000)]) == 0
    # not answered yet: counted as charged until the terminal says otherwise
    assert net_charged([step("sale", 50_000, "", "", state="unknown")]) == 50_000


@pytest.mark.parametrize(("text", "choice"), [
    ("cash", CASH),
    ("card", PaymentChoice("card", "postpay")),
    ("card_postpay", PaymentChoice("card", "postpay")),
    ("qris_prepay:75000", PaymentChoice("qris", "prepay", 75_000)),
    ("card:50000", PaymentChoice("card", "prepay", 50_000)),
])
def test_payment_choice_parse(text: str, choice: PaymentChoice) -> None:
    assert PaymentChoice.parse(text) == choice


@pytest.mark.parametrize("text", ["", "cheque", "card_prepay", "card_prepay:0", "card_prepay:-5", "card_later"])
def test_payment_choice_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PaymentChoice.parse(text)


# --- config -----------------------------------------------------------------------------


def test_edc_section_optional_and_round_trips(tmp_path: Path) -> None:
    assert parse_config(valid(), tmp_path).edc is None
    data = valid()
    data["edc"] = {"port": "/dev/spbu-edc", "response_timeout_s": 90, "scan_payments": ["card", "cash"]}
    cfg = parse_config(data, tmp_path)
    assert cfg.edc == EdcConfig("/dev/spbu-edc", 9600, 2.0, 3, 90.0, ("card", "cash"))
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    assert load_config(path).edc == cfg.edc


@pytest.mark.parametrize(("edc", "message"), [
    ({}, "missing 'port'"),
    ({"port": "/dev/x", "ack_timeout_s": 0}, "ack_timeout_s"),
    ({"port": "/dev/x", "response_timeout_s": 9999}, "response_timeout_s"),
    ({"port": "/dev/x", "scan_payments": ["card_prepay"]}, "scan_payments"),
    ({"port": "/dev/x", "pin": 1234}, "unknown setting"),
    ("ttyS0", "must be a table"),
])
def test_bad_edc_section(tmp_path: Path, edc: Any, message: str) -> None:
    data = copy.deepcopy(valid())
    data["edc"] = edc
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)


# --- receipt ----------------------------------------------------------------------------


def record(payment: dict[str, Any]) -> dict[str, Any]:
    return {"station": "34.401.01", "pump": 1, "tx_id": "34.401.01-00000007", "product": "pertalite",
            "dispensed_ml": 6_020, "unit_price_idr": 10_000, "amount_idr": 60_200, "payment": payment}


PREPAID = {"method": "card", "mode": "prepay", "status": "paid", "amount_idr": 60_200, "approval_code": "123456",
           "rrn": "000000000042", "steps": [
               {"kind": "sale", "amount_idr": 100_000, "response_code": "00", "approval_code": "123456",
                "rrn": "000000000042", "at": "2026-11-23T10:00:00+00:00"},
               {"kind": "refund", "amount_idr": 39_800, "response_code": "00", "approval_code": "654321",
                "rrn": "000000000043", "at": "2026-11-23T10:03:00+00:00"}]}


def test_receipt_shows_each_step_in_both_languages() -> None:
    text_id = render_receipt(record(PREPAID), "id")
    assert "6,02 L" in text_id and "Rp 10.000" in text_id and "Rp 60.200" in text_id
    assert "Rp 100.000" in text_id and "-Rp 39.800" in text_id and "123456" in text_id
    assert "Refund" in text_id and "STRUK" in text_id
    text_en = render_receipt(record(PREPAID), "en")
    assert "6.02 L" in text_en and "Rp 60,200" in text_en and "-Rp 39,800" in text_en and "RECEIPT" in text_en
    for text in (text_id, text_en):
        assert max(len(line) for line in text.splitlines()) <= WIDTH  # fits the thermal printer


def test_receipt_declined_card_and_cash() -> None:
    declined = {"method": "cash", "mode": "postpay", "status": "declined", "amount_idr": 0, "approval_code": None,
                "rrn": None, "steps": [{"kind": "sale", "amount_idr": 60_200, "response_code": "51",
                                        "approval_code": None, "rrn": None, "at": "2026-11-23T10:00:00+00:00"}]}
    text = render_receipt(record(declined), "en")
    assert "Declined 51" in text and "CASH" in text and "Approval" not in text
    assert text.splitlines()[-3].endswith("Rp 60,200")


def test_demo_fails_on_an_unmatched_approval() -> None:
    from agent.cli.demo import reconcile

    same = {1: 1000}
    assert reconcile({1: "pertalite"}, same, same, same, 1, 1, 0, unmatched=0).ok
    result = reconcile({1: "pertalite"}, same, same, same, 1, 1, 0, unmatched=1)
    assert not result.ok and result.summary["unmatched_approvals"] == 1


def test_boot_and_loop_queries_read_only_open_payments(tmp_path: Path) -> None:
    """Start-up and every loop pass must not grow with the payment history: each query the
    desk runs on its own (not per payment) is answered from the partial indexes."""
    import sqlite3

    from agent.journal import Journal
    from agent.payments import desk as p
    from agent.payments import store

    journal = Journal(tmp_path / "journal.sqlite")
    p.PaymentDesk(journal, None, "WIB", lambda *a: None, lambda e: None, lambda *a: True, lambda *a: None)
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    desk_sql = [
        f"UPDATE payment_steps SET state='unknown' WHERE {store.OPEN_STEPS} AND state='sent'",
        f"UPDATE payments SET state='orphan', target_idr=0 WHERE {store.OPEN_PAYMENTS} AND state='charging'",
        f"SELECT MIN(step_id) FROM payment_steps WHERE {store.OPEN_STEPS} AND state='unknown' HAVING COUNT(*)",
        f"SELECT pay_id FROM payments WHERE {store.OPEN_PAYMENTS} AND state IN ('settling', 'orphan')",
        f"SELECT 1 FROM payments WHERE {store.OPEN_PAYMENTS} AND state='charging' AND pump=1",
        f"SELECT DISTINCT p.pay_id FROM payments p JOIN payment_steps s ON s.pay_id = p.pay_id"
        f" WHERE p.{store.OPEN_PAYMENTS} AND p.state='charging' AND s.{store.OPEN_STEPS} AND s.state='unknown'",
    ]
    source = Path(p.__file__).read_text() + Path(store.__file__).read_text()
    for sql in desk_sql:
        plan = " ".join(str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN" not in plan, (sql, plan)
    for fragment in ("{OPEN_STEPS} AND state='sent'", "{OPEN_PAYMENTS} AND state='charging'",
                     "{OPEN_STEPS} AND state=?", "state IN ({marks})"):
        assert fragment in source  # the desk and its store really run these shapes
    db.close()
    journal.close()
