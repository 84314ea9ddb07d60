"""One, then two dead pumps on a DART line of eight, end to end over a pseudo-terminal: the agent marks
it out of service (state, heartbeat schema), refuses scans for it with a clear line,
keeps fuelling on the others, and takes it back when it answers again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.cli.demo import DemoStation, script_customers
from agent.presence import pump_states
from simulators.broker import MosquittoBroker
from simulators.dart_pump import DartPumpSim
from tests.conftest import validate
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def test_dead_pump_is_out_of_service_and_the_others_keep_fuelling(fresh_broker: MosquittoBroker,
                                                                   tmp_path: Path) -> None:
    # A broker of its own: eight pumps' retained Home Assistant discovery on the session's
    # broker would be counted by the dashboard's discovery test.
    demo = DemoStation(pumps=8, broker=fresh_broker, workdir=tmp_path / "demo", quiet=True, pump_kind="dart")
    try:
        demo.start(timeout_s=30)
        station, line = demo.station, demo.board
        assert station is not None and isinstance(line, DartPumpSim)
        line.set_dead(0, True)
        assert wait_until(lambda: station.pumps[1].out_of_service, 5)
        assert pump_states(station)["1"] == "out_of_service"
        validate("state", {"state": "online", "pumps": pump_states(station)})
        script = script_customers(demo.registry, demo.products, 0, demo.token)
        eligible = next(c for c in script if c.pump == 1 and c.expect == "ok")
        demo.scanners[1].scan(eligible.qr)
        refused = demo.tracker.next(1, "decision", 5)
        assert refused is not None and refused["reason"] == "pump_out_of_service"
        assert any("pompa tidak menjawab" in line for line in demo.lines)
        # a second pump dies; the other six of the line keep serving customers meanwhile
        line.set_dead(3, True)
        assert wait_until(lambda: station.pumps[4].out_of_service, 5)
        others = [c for c in script if c.pump in (2, 3) and c.label == "eligible fill"]
        started = time.monotonic()
        outcomes = demo.serve(others, timeout_s=40)
        assert outcomes and all(o.as_expected and o.transaction for o in outcomes), outcomes
        assert time.monotonic() - started < 40
        line.set_dead(0, False)  # cable mended: tried again within the slow-poll period
        line.set_dead(3, False)
        assert wait_until(lambda: not station.pumps[1].out_of_service, 6)
        assert wait_until(lambda: pump_states(station)["1"] == "idle", 3)
    finally:
        demo.close()
