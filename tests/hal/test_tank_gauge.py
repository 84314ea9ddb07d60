"""The tank gauge end to end: the Pi driver against the TLS console simulator over a pty
(inventory, deliveries, alarms), and the shift reconciliation in a running station: a
delivery is counted, sales drain the tanks, a leak raises the variance alarm, and the
payloads on the wire match their schemas."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cli.demo import DemoStation, script_customers
from hal.tank_gauge import GaugeAlarms, GaugeDeliveries, GaugeInventory, GaugeLink, TankGauge
from simulators.broker import MosquittoBroker
from simulators.tank_gauge import SimTank, TankGaugeSim
from tests.conftest import validate
from tests.helpers import MqttRecorder

pytestmark = pytest.mark.integration


def next_event(events: queue.Queue[Any], kind: type, test: Any = lambda e: True, seconds: float = 8) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, kind) and test(event):
            return event
    raise AssertionError(f"no {kind.__name__} in {seconds} s")


def test_driver_reads_inventory_deliveries_and_alarms_from_the_console() -> None:
    sim = TankGaugeSim([SimTank(1, "pertalite", 30_000, 18_000), SimTank(2, "solar", 20_000, 5_000)])
    sim.start()
    events: queue.Queue[Any] = queue.Queue()
    gauge = TankGauge(sim.path, events.put, poll_s=0.4, deliveries_every=2)
    gauge.start()
    try:
        assert next_event(events, GaugeLink, lambda e: e.connected)
        inventory = next_event(events, GaugeInventory)
        by_tank = {r.tank: r for r in inventory.tanks}
        assert by_tank[1].volume_l == 18_000 and by_tank[2].volume_l == 5_000
        assert by_tank[1].product_code == "1" and 20 < by_tank[1].temperature_c < 35
        assert by_tank[1].ullage_l == pytest.approx(30_000 - 18_000 - 20)
        sim.deliver(2, 6_000)
        delivery = next_event(events, GaugeDeliveries, lambda e: e.deliveries)
        assert delivery.deliveries[0].tank == 2 and delivery.deliveries[0].litres == pytest.approx(6_000)
        sim.set_leak(1, 200)
        alarms = next_event(events, GaugeAlarms, lambda e: e.alarms.get(1))
        assert "sudden_loss_alarm" in alarms.alarms[1]
        assert gauge.errors == 0
        sim.close()  # the console goes quiet: reported once the requests go unanswered
        assert next_event(events, GaugeLink, lambda e: not e.connected, seconds=15)
    finally:
        gauge.close()
        sim.close()


@pytest.mark.parametrize("leak", [False, True], ids=["tight", "leak"])
def test_shift_reconciliation_counts_deliveries_and_catches_a_leak(mosquitto: MosquittoBroker, tmp_path: Path,
                                                                   leak: bool) -> None:
    recorder = MqttRecorder(mosquitto, ["spbu/v1/#"], "tank-recorder")
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, tanks=True, leak=leak,
                       flow_lps=10.0)
    try:
        demo.start()
        assert demo.gauge is not None
        script = [c for c in script_customers(demo.registry, demo.products, 0, demo.token) if c.expect == "ok"][:4]
        demo.gauge.deliver(2, 3_000)
        outcomes = demo.serve(script, timeout_s=60)
        assert all(o.transaction for o in outcomes)
        result = demo.reconcile()
        demo.reconcile_tanks(result, leak)
        assert result.ok, result.differences
        rows = {r["product"]: r for r in result.summary["tanks"]}
        assert rows["solar"]["deliveries_l"] == pytest.approx(3_000)
        assert rows["pertalite"]["sales_l"] > 0 and rows["solar"]["sales_l"] > 0
        assert rows["pertalite"]["alarm"] is leak and rows["solar"]["alarm"] is False
        if not leak:
            assert abs(rows["pertalite"]["variance_l"]) < 0.5 and abs(rows["solar"]["variance_l"]) < 0.5
        time.sleep(0.5)
        station = demo.station_id
        alerts = [m for t, m in recorder.received(lambda t: t.endswith("/event")) if m.get("alert") == "tank_variance"]
        assert bool(alerts) is leak
        for _, payload in recorder.received(lambda t: t == f"spbu/v1/{station}/tanks"):
            validate("tanks", payload)
        recs = [m for _, m in recorder.received(lambda t: t == f"spbu/v1/{station}/tanks/reconciliation")]
        assert recs and recs[-1]["alarm"] is leak
        for payload in recs:
            validate("tank-reconciliation", payload)
        for _, payload in recorder.received(lambda t: t == f"spbu/v1/{station}/tanks/history"):
            validate("tanks-history", payload)
        for _, payload in recorder.received(lambda t: t == f"spbu/v1/{station}/sales/hourly"):
            validate("sales-hourly", payload)
        for _, payload in recorder.received(lambda t: t.endswith("/event")):
            validate("event", payload)
    finally:
        recorder.close()
        demo.close()
