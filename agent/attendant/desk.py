"""The attendants' devices as the agent sees them: requests in (sign-in, camera scans,
payment choice, stop, reprint, shift close), the per-pump view out.

Runs on the station's event loop. A device is known by its broker user name, which the
broker's ACL pins to the topic's <device> segment; the agent checks again that the pump is
one of the device's own and that an attendant is signed in on it, so a wrong ACL alone
cannot let a phone act on another island's pump. Nothing here decides eligibility: a scan
from a phone goes down the same path as a read from a serial scanner.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.attendant import topics
from agent.attendant.config import ATTENDANT_NUMBER, AttendantConfig, hash_pin, verify_pin
from agent.attendant.shift_report import Shift, build_report
from agent.attendant.throttle import Throttle
from agent.journal import Journal
from agent.payments.desk import PaymentChoice

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], bool]
MAX_REQUEST = 4096
FLOW_INTERVAL_S = 0.25  # live litres: four updates a second are plenty for a person
_DUMMY_HASH = hash_pin("0000", b"\0" * 16)  # an unknown number costs the same time as a wrong PIN

SCHEMA = """CREATE TABLE IF NOT EXISTS attendant_shifts (
    shift_id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    attendant TEXT NOT NULL,
    name TEXT NOT NULL,
    pumps TEXT NOT NULL,
    started_at REAL NOT NULL,
    totals_start TEXT NOT NULL,
    ended_at REAL,
    report TEXT,
    published INTEGER NOT NULL DEFAULT 0
)"""


class StationActions(Protocol):
    """What the attendant's requests may do to the station (agent/station.py)."""

    def attendant_scan(self, pump: int, text: str) -> None: ...
    def attendant_pay(self, pump: int, choice: PaymentChoice) -> str: ...
    def attendant_stop(self, pump: int) -> bool: ...
    def pump_running(self, pump: int) -> bool: ...
    def totaliser_ml(self, pump: int) -> int | None: ...
    def payment_for_tx(self, tx_id: str) -> dict[str, Any] | None: ...


class BadRequest(ValueError):
    pass


@dataclass
class PumpView:
    pump: int
    product: str
    state: str = "inoperative"
    decision: dict[str, Any] | None = None
    fill: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    choice: str | None = None
    seq: int = 0
    published_mono: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, attendant: str | None) -> dict[str, Any]:
        return {"pump": self.pump, "product": self.product, "state": self.state, "seq": self.seq,
                "decision": self.decision, "fill": self.fill, "last": self.last, "payment_choice": self.choice,
                "attendant": attendant}


class AttendantDesk:
    def __init__(self, station: str, cfg: AttendantConfig, journal: Journal, publish: Publish,
                 actions: StationActions, products: dict[int, str], prices: Callable[[str], int]) -> None:
        self.station = station
        self.cfg = cfg
        self.journal = journal
        self.publish = publish
        self.actions = actions
        self.prices = prices
        self.views = {n: PumpView(n, product) for n, product in sorted(products.items())}
        self.throttle = Throttle(cfg.max_failures, cfg.lockout_s)
        self.receipts: dict[int, str] = {}  # pump -> the last receipt's text
        with journal.atomic() as db:
            db.execute(SCHEMA)
        self.shifts: dict[str, Shift] = {s.device: s for s in self._open_shifts()}

    # --- who is on shift ---------------------------------------------------------------

    def attendant_on(self, pump: int) -> str | None:
        """The attendant on shift for this pump (the latest sign-in among its devices)."""
        on = [s for s in self.shifts.values() if pump in s.pumps]
        return max(on, key=lambda s: s.started_at).attendant if on else None

    def _open_shifts(self) -> list[Shift]:
        rows = self.journal._db.execute(
            "SELECT shift_id, device, attendant, name, pumps, started_at, totals_start FROM attendant_shifts"
            " WHERE ended_at IS NULL").fetchall()
        return [Shift(int(r[0]), str(r[1]), str(r[2]), str(r[3]), tuple(json.loads(r[4])), float(r[5]),
                      {int(k): v for k, v in json.loads(r[6]).items()}) for r in rows]

    # --- requests ----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse_request(self.station, topic)
        if parsed is None:
            return
        device, pump, verb = parsed
        if device not in self.cfg.devices:
            log.warning("request from unenrolled device %r ignored", device)
            return
        try:
            body = self._body(payload)
            reply = self._shift_request(device, body) if pump is None else self._pump_request(device, pump, verb,
                                                                                              body)
        except BadRequest as exc:
            reply = {"type": "error", "ok": False, "reason": "bad_request", "detail": str(exc)}
        if reply is not None:
            reply.setdefault("at_ms", time.time() * 1000)
            self.publish(topics.reply(self.station, device), json.dumps(reply).encode(), 1, False)

    @staticmethod
    def _body(payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_REQUEST:
            raise BadRequest("request too large")
        try:
            body = json.loads(payload or b"{}")
        except ValueError as exc:
            raise BadRequest("not JSON") from exc
        if not isinstance(body, dict):
            raise BadRequest("not a JSON object")
        return body

    def _shift_request(self, device: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type")
        if kind == "hello":
            return self._hello(device)
        if kind == "signin":
            return self._signin(device, str(body.get("attendant", "")), str(body.get("pin", "")))
        if kind == "close":
            return self._close_shift(device)
        raise BadRequest(f"unknown shift request {kind!r}")

    def _hello(self, device: str) -> dict[str, Any]:
        shift = self.shifts.get(device)
        return {"type": "hello", "ok": True, "device": device, "pumps": list(self.cfg.devices[device]),
                "products": {str(n): self.views[n].product for n in self.cfg.devices[device]},
                "shift": None if shift is None else {"attendant": shift.attendant, "name": shift.name}}

    def _pump_request(self, device: str, pump: int, verb: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if pump not in self.cfg.devices[device]:
            log.warning("device %s asked to %s on pump %d, not one of its pumps", device, verb, pump)
            return {"type": verb, "ok": False, "pump": pump, "reason": "not_your_pump"}
        if device not in self.shifts:
            return {"type": verb, "ok": False, "pump": pump, "reason": "not_signed_in"}
        if verb == "scan":
            text = body.get("text")
            if not isinstance(text, str) or not 0 < len(text) <= 1024:
                raise BadRequest("scan needs the code's text")
            self.actions.attendant_scan(pump, text)
            return None  # the decision itself is the answer, on the pump's view
        if verb == "pay":
            try:
                choice = PaymentChoice.parse(str(body.get("method", "")))
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            applies = self.actions.attendant_pay(pump, choice)
            self.views[pump].choice = choice.method if applies == "next" else None
            self._changed(pump)
            return {"type": "pay", "ok": True, "pump": pump, "method": choice.method, "applies": applies}
        if verb == "stop":
            return {"type": "stop", "ok": self.actions.attendant_stop(pump), "pump": pump}
        text = self.receipts.get(pump)
        return {"type": "reprint", "ok": text is not None, "pump": pump, "text": text or ""}

    # --- sign-in and shift close ---------------------------------------------------------

    def _signin(self, device: str, number: str, pin: str) -> dict[str, Any]:
        now = time.monotonic()
        keys = (f"device:{device}", f"number:{number}")
        wait = self.throttle.wait_s(keys, now)
        if wait > 0:
            return {"type": "signin", "ok": False, "reason": "rate_limited", "retry_after_s": round(wait, 1)}
        person = self.cfg.people.get(number) if ATTENDANT_NUMBER.fullmatch(number) else None
        good = verify_pin(pin, person.pin_hash if person else _DUMMY_HASH) and person is not None
        if not good or person is None:
            wait = self.throttle.failed(keys, now)
            log.warning("wrong attendant number or PIN on device %s", device)
            return {"type": "signin", "ok": False, "reason": "rate_limited" if wait else "wrong_pin",
                    "retry_after_s": round(wait, 1)}
        self.throttle.succeeded(keys)
        current = self.shifts.get(device)
        if current is not None and current.attendant != person.number:
            closed = self._close_shift(device)  # the handover: the last shift's report goes out first
            if not closed["ok"]:
                return {"type": "signin", "ok": False, "reason": closed["reason"]}
        if device not in self.shifts:
            self._open_shift(device, person.number, person.name)
        for pump in self.cfg.devices[device]:
            self._changed(pump)
        return {"type": "signin", "ok": True, "attendant": person.number, "name": person.name,
                "pumps": list(self.cfg.devices[device])}

    def _open_shift(self, device: str, number: str, name: str) -> None:
        pumps = self.cfg.devices[device]
        start = time.time()
        totals = {p: self.actions.totaliser_ml(p) for p in pumps}
        with self.journal.atomic() as db:
            cur = db.execute("INSERT INTO attendant_shifts (device, attendant, name, pumps, started_at, totals_start)"
                             " VALUES (?, ?, ?, ?, ?, ?)", (device, number, name, json.dumps(pumps), start,
                                                            json.dumps(totals)))
        self.shifts[device] = Shift(int(cur.lastrowid or 0), device, number, name, pumps, start, totals)
        log.info("attendant %s signed in on %s (pumps %s)", number, device, pumps)

    def _close_shift(self, device: str) -> dict[str, Any]:
        shift = self.shifts.get(device)
        if shift is None:
            return {"type": "report", "ok": False, "reason": "not_signed_in"}
        if any(self.actions.pump_running(p) for p in shift.pumps):
            return {"type": "report", "ok": False, "reason": "fill_running"}
        ended = time.time()
        report = build_report(self.journal._db, self.station, shift, ended,
                              {p: self.actions.totaliser_ml(p) for p in shift.pumps}, self.actions.payment_for_tx)
        with self.journal.atomic() as db:
            db.execute("UPDATE attendant_shifts SET ended_at=?, report=? WHERE shift_id=?",
                       (ended, json.dumps(report), shift.shift_id))
        del self.shifts[device]
        self._send_report(shift.shift_id, report)
        for pump in shift.pumps:
            self._changed(pump)
        return {"type": "report", "ok": True, "report": report}

    def _send_report(self, shift_id: int, report: dict[str, Any]) -> None:
        if self.publish(topics.shift_report(self.station), json.dumps(report).encode(), 1, False):
            with self.journal.atomic() as db:
                db.execute("UPDATE attendant_shifts SET published=1 WHERE shift_id=?", (shift_id,))

    def resend_reports(self) -> None:
        """At each connection: reports the link was down for go out now."""
        rows = self.journal._db.execute("SELECT shift_id, report FROM attendant_shifts WHERE report IS NOT NULL"
                                        " AND published=0 ORDER BY shift_id LIMIT 50").fetchall()
        for shift_id, report in rows:
            self._send_report(int(shift_id), json.loads(report))

    # --- what the station tells ----------------------------------------------------------

    def decision(self, event: dict[str, Any], plate: str, category: str, used_ml: int, limit_ml: int) -> None:
        """Every scan's answer, with the full plate the attendant compares with the car."""
        view = self.views.get(int(event["pump"]))
        if view is None:
            return
        self._learn_totaliser(view.pump)  # an authorised pump has not flowed yet
        product = str(event.get("product") or view.product)  # a multi-grade pump: the nozzle's product
        price = self.prices(product)
        view.decision = {
            "ok": bool(event["ok"]), "code": event["code"], "tx_id": event.get("tx_id"), "plate": plate,
            "category": category, "product": product, "preset_ml": event.get("preset_ml", 0),
            "detail": str(event.get("detail", ""))[:80],
            "allowed_idr": event.get("preset_ml", 0) * price // 1000, "remaining_ml": event.get("remaining_ml", 0),
            "used_ml": used_ml, "limit_ml": limit_ml,
            "elsewhere_ml": event.get("elsewhere_ml"), "decided_ms": _epoch_ms(event["at"]),
        }
        if event["ok"]:
            view.choice = None  # the choice went with this customer
        self._changed(view.pump)

    def pump(self, number: int, state: str, dispensed_ml: int | None, tx_id: str | None, preset_ml: int) -> None:
        view = self.views.get(number)
        if view is None:
            return
        product = view.decision["product"] if view.decision and view.decision.get("tx_id") == tx_id else view.product
        fill = None if tx_id is None else {"tx_id": tx_id, "litres_ml": dispensed_ml or 0, "preset_ml": preset_ml,
                                           "amount_idr": (dispensed_ml or 0) * self.prices(product) // 1000}
        if tx_id is None:
            self._learn_totaliser(number)  # between fills only: mid-fill it would skip litres
        same = state == view.state and (fill is None) == (view.fill is None)
        view.state, view.fill = state, fill
        if not same or time.monotonic() - view.published_mono >= FLOW_INTERVAL_S:
            self._changed(number)

    def _learn_totaliser(self, pump: int) -> None:
        """A shift opened before the pump reported its totaliser takes the first reading."""
        for device, shift in list(self.shifts.items()):
            if pump in shift.pumps and shift.totals_start.get(pump) is None:
                total = self.actions.totaliser_ml(pump)
                if total is None:
                    continue
                totals = {**shift.totals_start, pump: total}
                with self.journal.atomic() as db:
                    db.execute("UPDATE attendant_shifts SET totals_start=? WHERE shift_id=?",
                               (json.dumps(totals), shift.shift_id))
                self.shifts[device] = Shift(shift.shift_id, shift.device, shift.attendant, shift.name, shift.pumps,
                                            shift.started_at, totals)

    def closed(self, record: dict[str, Any], receipt: str) -> None:
        view = self.views.get(int(record["pump"]))
        if view is None:
            return
        pay = record.get("payment") or {}
        view.last = {"tx_id": record["tx_id"], "litres_ml": record["dispensed_ml"],
                     "amount_idr": record["amount_idr"], "method": pay.get("method", "cash"),
                     "status": pay.get("status"), "end_reason": record["end_reason"]}
        self.receipts[view.pump] = receipt
        self._changed(view.pump)

    def on_event(self, event: dict[str, Any]) -> None:
        """The station's listener: a card or QRIS payment's settlement and its receipt."""
        if event.get("type") != "receipt" or int(event.get("pump", 0)) not in self.views:
            return
        view = self.views[int(event["pump"])]
        if view.last is not None and view.last["tx_id"] == event.get("tx_id"):
            view.last = {**view.last, "method": event["payment"]["method"], "status": event["payment"]["status"],
                         "paid_idr": event["payment"]["amount_idr"]}
        self.receipts[view.pump] = str(event.get("text", ""))
        self._changed(view.pump)

    def publish_all(self) -> None:
        for number in self.views:
            self._changed(number)
        self.resend_reports()

    def _changed(self, number: int) -> None:
        view = self.views[number]
        view.seq += 1
        view.published_mono = time.monotonic()
        body = view.body(self.attendant_on(number))
        self.publish(topics.pump_view(self.station, number), json.dumps(body).encode(), 0, True)


def _epoch_ms(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() * 1000
