"""The dashboard's live view: what it publishes, when, and that it matches its schemas."""

from __future__ import annotations

import json
from typing import Any

from agent.homeassistant import discovery
from agent.live_view import FLOW_INTERVAL_S, RECENT_MAX, LiveSession, LiveView
from tests.conftest import validate

STATION = "34.401.01"


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        self.sent.append((topic, json.loads(payload), retain))
        return True

    def last(self, suffix: str) -> dict[str, Any]:
        return [body for topic, body, _ in self.sent if topic.endswith(suffix)][-1]

    def count(self, suffix: str) -> int:
        return sum(1 for topic, _, _ in self.sent if topic.endswith(suffix))


def session(ml: int, tx: str = "34.401.01-00000001") -> LiveSession:
    return LiveSession(tx, "B ***4 XYZ", "pertalite", 20_000, ml, "2026-11-23T01:00:00+00:00")


def record(tx: str, product: str, ml: int, amount: int, day: str = "2026-11-23") -> dict[str, Any]:
    return {"tx_id": tx, "pump": 1, "product": product, "plate_masked": "B ***4 XYZ", "dispensed_ml": ml,
            "amount_idr": amount, "end_reason": "nozzle_hung", "vehicle_id": "123",
            "quota": {"day": day}, "times": {"closed_at": "2026-11-23T01:02:00+00:00"},
            "payment": {"method": "card", "status": "paid"}}


def test_flow_updates_are_throttled_but_state_changes_are_not() -> None:
    sink = Sink()
    live = LiveView(STATION, {1: "pertalite"}, sink)
    live.pump(1, "authorised", session(0), now=100.0)
    live.pump(1, "fuelling", session(0), now=100.1)  # a state change: at once
    assert sink.count("/pump/1") == 2
    for step in range(1, 5):  # four STATUS frames within 0.4 s
        live.pump(1, "fuelling", session(step * 100), now=100.1 + step * 0.1)
    assert sink.count("/pump/1") == 2
    live.tick(100.1 + FLOW_INTERVAL_S)  # the held-back litres go out on the next tick
    assert sink.count("/pump/1") == 3
    assert sink.last("/pump/1")["session"]["dispensed_ml"] == 400
    live.tick(100.1 + 2 * FLOW_INTERVAL_S)  # nothing new: nothing sent
    assert sink.count("/pump/1") == 3
    for _, body, retain in sink.sent:
        assert retain
        validate("pump", body)


def test_transactions_feed_totals_and_recent_without_vehicle_ids() -> None:
    sink = Sink()
    live = LiveView(STATION, {1: "pertalite", 2: "solar"}, sink)
    live.seed("2026-11-23", {"solar": {"litres_ml": 5000, "amount_idr": 34000, "count": 1}}, [])
    live.transaction(record("t1", "pertalite", 10_000, 100_000))
    live.transaction(record("t2", "pertalite", 0, 0))  # a cancelled session sells nothing
    live.transaction(record("t3", "solar", 20_000, 136_000))
    totals = sink.last("/totals")
    validate("totals", totals)
    assert totals["products"] == {"pertalite": {"litres_ml": 10_000, "amount_idr": 100_000, "count": 1},
                                  "solar": {"litres_ml": 25_000, "amount_idr": 170_000, "count": 2}}
    recent = sink.last("/recent")
    validate("recent", recent)
    assert [t["tx_id"] for t in recent["transactions"]] == ["t3", "t2", "t1"]
    assert all("vehicle_id" not in t for t in recent["transactions"])
    assert recent["transactions"][0]["payment"] == {"method": "card", "status": "paid"}


def test_a_new_day_starts_from_zero_and_recent_is_bounded() -> None:
    sink = Sink()
    live = LiveView(STATION, {1: "pertalite"}, sink)
    for n in range(RECENT_MAX + 5):
        live.transaction(record(f"t{n}", "pertalite", 1000, 10_000))
    assert len(sink.last("/recent")["transactions"]) == RECENT_MAX
    assert sink.last("/totals")["products"]["pertalite"]["count"] == RECENT_MAX + 5
    live.transaction(record("next-day", "pertalite", 2000, 20_000, day="2026-11-24"))
    assert sink.last("/totals") | {"at": ""} == {"day": "2026-11-24", "at": "",
                                                 "products": {"pertalite": {"litres_ml": 2000,
                                                                            "amount_idr": 20_000, "count": 1}}}


def test_alerts_accumulate_clear_and_acknowledge() -> None:
    sink = Sink()
    live = LiveView(STATION, {1: "pertalite"}, sink)
    live.alert({"type": "alert", "alert": "estop", "pump": 1, "at": "2026-11-23T01:00:00+00:00"})
    live.alert({"type": "alert", "alert": "estop", "pump": 1, "at": "2026-11-23T01:00:05+00:00"})
    live.alert({"type": "alert", "alert": "clock_untrusted", "detail": "wall clock 1970"})
    active = sink.last("/alerts")["active"]
    validate("alerts", sink.last("/alerts"))
    assert sorted((a["id"], a["count"]) for a in active) == [("clock_untrusted", 1), ("estop:1", 2)]
    live.alert({"type": "alert", "alert": "clock_trusted"})  # the clock came back: cleared
    assert [a["id"] for a in sink.last("/alerts")["active"]] == ["estop:1"]
    assert live.acknowledge("estop:1")
    assert not live.acknowledge("estop:1")
    assert sink.last("/alerts")["active"] == []


def test_level_conditions_are_listed_once_while_they_last() -> None:
    sink = Sink()
    live = LiveView(STATION, {1: "pertalite"}, sink)
    for _ in range(3):
        live.condition("outbox_growing", True, "250 transactions")
    assert sink.count("/alerts") == 1
    assert sink.last("/alerts")["active"][0]["count"] == 1
    live.condition("outbox_growing", False)
    assert sink.last("/alerts")["active"] == []


def test_home_assistant_discovery_covers_pumps_totals_link_and_alerts() -> None:
    messages = dict(discovery(STATION, {1: "pertalite", 2: "solar"}, announced_before=[]))
    configs = {topic: json.loads(payload) for topic, payload in messages.items()}
    assert all(topic.startswith("homeassistant/") and topic.endswith("/config") for topic in configs)
    ids = [c["unique_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))
    states = {c["state_topic"] for c in configs.values()}
    assert {f"spbu/v1/{STATION}/pump/1", f"spbu/v1/{STATION}/pump/2", f"spbu/v1/{STATION}/totals",
            f"spbu/v1/{STATION}/state", f"spbu/v1/{STATION}/alerts"} <= states
    assert any("today_solar" in t for t in configs) and any("today_pertalite" in t for t in configs)
    assert all(c["device"]["identifiers"] == ["spbu_34_401_01"] for c in configs.values())


def test_home_assistant_entities_of_a_removed_pump_are_deleted() -> None:
    messages = discovery(STATION, {1: "pertalite"}, announced_before=[1, 2])
    removed = [topic for topic, payload in messages if payload == b""]
    assert removed and all("pump_2_" in topic for topic in removed)
    assert not any("pump_2_" in topic for topic, payload in messages if payload)
