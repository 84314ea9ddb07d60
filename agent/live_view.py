"""The station's live view for the manager's dashboard: retained MQTT topics a page can read
on arrival (pumps, today's totals, recent transactions, active alerts) and keep current.

Retained, because a tablet that opens the page mid-shift must see the forecourt at once,
not wait for the next event. Flow updates are throttled: a pump's running litres change
four times a second on the board's STATUS, the page needs about two.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import topics

Publish = Callable[[str, bytes, int, bool], bool]

RECENT_MAX = 20
FLOW_INTERVAL_S = 0.5
# Alerts that end another: a trusted clock clears "clock_untrusted", and so on.
CLEARS = {"clock_trusted": "clock_untrusted", "estop_released": "estop", "outbox_drained": "outbox_growing",
          "allowlist_fresh": "allowlist_frozen", "disk_ok": "disk_low",
          "clock_confirmed": "clock_provisional"}


@dataclass(frozen=True)
class LiveSession:
    tx_id: str
    plate_masked: str
    product: str
    preset_ml: int
    dispensed_ml: int
    opened_at: str


@dataclass
class PumpView:
    number: int
    product: str
    state: str = "inoperative"
    session: LiveSession | None = None
    published: float = 0.0
    dirty: bool = True


@dataclass
class Totals:
    day: str = ""
    products: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, product: str, litres_ml: int, amount_idr: int) -> None:
        row = self.products.setdefault(product, {"litres_ml": 0, "amount_idr": 0, "count": 0})
        row["litres_ml"] += litres_ml
        row["amount_idr"] += amount_idr
        row["count"] += 1


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class LiveView:
    def __init__(self, station: str, pumps: dict[int, str], publish: Publish) -> None:
        self.station = station
        self.publish = publish
        self.pumps = {n: PumpView(n, product) for n, product in sorted(pumps.items())}
        self.totals = Totals()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_MAX)
        self.alerts: dict[str, dict[str, Any]] = {}
        self._alert_seq = 0

    # --- inputs from the station ---------------------------------------------------------

    def pump(self, number: int, state: str, session: LiveSession | None, now: float) -> None:
        view = self.pumps.get(number)
        if view is None:
            return
        flow_only = (view.state == state and view.session is not None and session is not None
                     and view.session.tx_id == session.tx_id)
        if view.state == state and view.session == session:
            return
        view.state, view.session, view.dirty = state, session, True
        if not flow_only or now - view.published >= FLOW_INTERVAL_S:
            self._publish_pump(view, now)

    def seed(self, day: str, totals: dict[str, dict[str, int]], recent: list[dict[str, Any]]) -> None:
        """At start-up, from the journal: the page shows the day so far, not an empty one."""
        self.totals = Totals(day, {p: dict(row) for p, row in totals.items()})
        self.recent.clear()
        for item in reversed(recent):  # oldest first, so the newest ends up in front
            self.recent.appendleft(item)

    def transaction(self, record: dict[str, Any]) -> None:
        day = str(record.get("quota", {}).get("day", ""))
        if day != self.totals.day:
            self.totals = Totals(day)
        if record.get("dispensed_ml", 0) > 0:
            self.totals.add(str(record["product"]), int(record["dispensed_ml"]), int(record["amount_idr"]))
        self.recent.appendleft(summary(record))
        self._publish_totals()
        self._publish_recent()

    def payment(self, tx_id: str, payment: dict[str, Any]) -> None:
        """A card or QRIS payment settled after its fill closed: the listed sale follows it."""
        for item in self.recent:
            if item.get("tx_id") == tx_id:
                item["payment"] = {"method": payment.get("method"), "status": payment.get("status")}
                self._publish_recent()
                return

    def new_day(self, day: str) -> None:
        if day != self.totals.day:
            self.totals = Totals(day)
            self._publish_totals()

    def alert(self, event: dict[str, Any]) -> None:
        name = str(event.get("alert", ""))
        if not name:
            return
        pump = event.get("pump")
        cleared = CLEARS.get(name)
        if cleared is not None:
            if self.alerts.pop(_alert_key(cleared, pump), None) is not None:
                self._publish_alerts()
            return
        key = _alert_key(name, pump)
        if key in self.alerts:
            self.alerts[key]["count"] += 1
            self.alerts[key]["last_at"] = str(event.get("at") or _now_iso())
        else:
            self._alert_seq += 1
            self.alerts[key] = {"id": key, "alert": name, "pump": pump if isinstance(pump, int) else None,
                                "detail": str(event.get("detail", event.get("code", ""))),
                                "first_at": str(event.get("at") or _now_iso()),
                                "last_at": str(event.get("at") or _now_iso()), "count": 1}
        self._publish_alerts()

    def condition(self, name: str, active: bool, detail: str = "") -> None:
        """A level alarm (outbox growing, list expired): listed while it lasts, once."""
        if active and name not in self.alerts:
            self.alert({"alert": name, "detail": detail})
        elif not active and self.alerts.pop(name, None) is not None:
            self._publish_alerts()

    def acknowledge(self, alert_id: str) -> bool:
        """The manager has seen it: gone from the active list (it stays in the event log)."""
        if self.alerts.pop(alert_id, None) is None:
            return False
        self._publish_alerts()
        return True

    def tick(self, now: float) -> None:
        for view in self.pumps.values():
            if view.dirty and now - view.published >= FLOW_INTERVAL_S:
                self._publish_pump(view, now)

    def publish_all(self, now: float) -> None:
        """After (re)connecting: the broker may have lost the retained copies."""
        for view in self.pumps.values():
            self._publish_pump(view, now)
        self._publish_totals()
        self._publish_recent()
        self._publish_alerts()

    # --- payloads ------------------------------------------------------------------------

    def pump_payload(self, view: PumpView) -> dict[str, Any]:
        s = view.session
        return {"pump": view.number, "product": view.product, "state": view.state, "at": _now_iso(),
                "session": None if s is None else {
                    "tx_id": s.tx_id, "plate_masked": s.plate_masked, "product": s.product,
                    "preset_ml": s.preset_ml, "dispensed_ml": s.dispensed_ml, "opened_at": s.opened_at}}

    def _publish_pump(self, view: PumpView, now: float) -> None:
        if self.publish(topics.pump_view(self.station, view.number), _json(self.pump_payload(view)), 1, True):
            view.published, view.dirty = now, False

    def _publish_totals(self) -> None:
        body = {"day": self.totals.day, "products": self.totals.products, "at": _now_iso()}
        self.publish(topics.totals(self.station), _json(body), 1, True)

    def _publish_recent(self) -> None:
        self.publish(topics.recent(self.station), _json({"transactions": list(self.recent), "at": _now_iso()}),
                     1, True)

    def _publish_alerts(self) -> None:
        body = {"active": sorted(self.alerts.values(), key=lambda a: a["first_at"]), "at": _now_iso()}
        self.publish(topics.alerts(self.station), _json(body), 1, True)


def _alert_key(name: str, pump: object) -> str:
    return f"{name}:{pump}" if isinstance(pump, int) else name


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the page lists of a transaction: no vehicle id, the plate masked."""
    payment = record.get("payment") or {}
    times = record.get("times") or {}
    return {"tx_id": record.get("tx_id"), "pump": record.get("pump"), "product": record.get("product"),
            "plate_masked": record.get("plate_masked", ""), "dispensed_ml": record.get("dispensed_ml", 0),
            "amount_idr": record.get("amount_idr", 0), "end_reason": record.get("end_reason", ""),
            "closed_at": times.get("closed_at"),
            "payment": {"method": payment.get("method"), "status": payment.get("status")}}
