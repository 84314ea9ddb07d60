"""The customer's receipt, from the transaction record alone: the same text on the
attendant's screen and on a 32-column thermal printer, in Bahasa Indonesia or English."""

from __future__ import annotations

from typing import Any

from agent.domain import PRODUCT_LABELS, format_litres, format_rupiah

WIDTH = 32

_WORDS = {
    "id": {"title": "STRUK PEMBELIAN BBM", "station": "SPBU", "pump": "Pompa", "tx": "No", "product": "Produk",
           "litres": "Volume", "price": "Harga/L", "amount": "Jumlah", "paid": "Dibayar", "method": "Bayar",
           "approval": "Kode otorisasi", "rrn": "RRN", "refund": "Refund", "void": "Dibatalkan (void)",
           "sale": "Debit", "declined": "Ditolak", "cash_due": "Tunai", "prepay": "prabayar",
           "postpay": "pascabayar", "cash": "TUNAI", "card": "KARTU", "qris": "QRIS", "thanks": "Terima kasih"},
    "en": {"title": "FUEL PURCHASE RECEIPT", "station": "Station", "pump": "Pump", "tx": "No", "product": "Product",
           "litres": "Volume", "price": "Price/L", "amount": "Amount", "paid": "Paid", "method": "Payment",
           "approval": "Approval code", "rrn": "RRN", "refund": "Refund", "void": "Voided",
           "sale": "Charged", "declined": "Declined", "cash_due": "Cash", "prepay": "prepaid",
           "postpay": "postpaid", "cash": "CASH", "card": "CARD", "qris": "QRIS", "thanks": "Thank you"},
}


def _row(left: str, right: str) -> str:
    gap = max(1, WIDTH - len(left) - len(right))
    return left + " " * gap + right


def render_receipt(record: dict[str, Any], lang: str = "id") -> str:
    w = _WORDS.get(lang, _WORDS["id"])
    pay = record.get("payment") or {}
    lines = [w["title"].center(WIDTH).rstrip(), "-" * WIDTH,
             _row(w["station"], str(record["station"])), _row(w["pump"], str(record["pump"])),
             _row(w["tx"], str(record["tx_id"])), _row(w["product"], PRODUCT_LABELS.get(record["product"],
                                                                                        record["product"])),
             _row(w["litres"], format_litres(int(record["dispensed_ml"]), lang) + " L"),
             _row(w["price"], format_rupiah(int(record["unit_price_idr"]), lang)),
             _row(w["amount"], format_rupiah(int(record["amount_idr"]), lang)), "-" * WIDTH]
    method = str(pay.get("method", "cash"))
    mode = str(pay.get("mode", "postpay"))
    lines.append(_row(w["method"], f"{w.get(method, method)} ({w.get(mode, mode)})"))
    for step in pay.get("steps", []):
        kind = step["kind"]
        if kind == "inquiry":
            continue
        approved = step["response_code"] == "00"
        label = w["declined"] + " " + step["response_code"] if not approved else w.get(kind, kind)
        sign = "-" if kind in ("refund", "void") and approved else ""
        lines.append(_row(label, sign + format_rupiah(int(step["amount_idr"]), lang)))
        if approved and step.get("approval_code"):
            lines.append(_row("  " + w["approval"], str(step["approval_code"])))
        if approved and step.get("rrn"):
            lines.append(_row("  " + w["rrn"], str(step["rrn"])))
    if method in ("card", "qris"):
        lines.append(_row(w["paid"], format_rupiah(int(pay.get("amount_idr", 0)), lang)))
    else:
        lines.append(_row(w["cash_due"], format_rupiah(int(record["amount_idr"]), lang)))
    lines += ["-" * WIDTH, w["thanks"].center(WIDTH).rstrip()]
    return "\n".join(lines)
