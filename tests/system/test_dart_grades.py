"""Multi-grade DART dispensers end to end: Pertalite and Solar from different nozzles of one
pump, the nozzle lifted decides the product, a wrong-grade lift dispenses nothing, and the
pump's own per-nozzle totals reconcile with the journal and headquarters per grade."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.demo import DemoStation, script_customers
from simulators.broker import MosquittoBroker

pytestmark = pytest.mark.integration


def test_two_grades_on_one_pump_fuel_refuse_and_reconcile_per_nozzle(mosquitto: MosquittoBroker,
                                                                      tmp_path: Path) -> None:
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, pump_kind="dart",
                       nozzles=2)
    try:
        demo.start()
        assert demo.grades == {1: ("pertalite", "solar"), 2: ("solar", "pertalite")}
        script = script_customers(demo.registry, demo.products, 10, demo.token, grades=demo.grades)
        outcomes = demo.serve(script, timeout_s=90)
        demo.wait_delivered(20)
        assert len(outcomes) == len(script)
        for outcome in outcomes:
            assert outcome.as_expected, (outcome.customer, outcome.decision)
        wrong = [o for o in outcomes if o.customer.expect == "wrong_grade"]
        assert len(wrong) == 2 and all(o.transaction is None for o in wrong)
        result = demo.reconcile()
        assert result.ok, result.differences
        nozzles = result.summary["nozzles"]
        # both grades really flowed from pump 1, each through its own nozzle
        assert nozzles["1/1"]["product"] == "pertalite" and nozzles["1/1"]["totaliser_ml"] > 0
        assert nozzles["1/2"]["product"] == "solar" and nozzles["1/2"]["totaliser_ml"] > 0
        assert demo.station is not None
        # prices per grade came from the signed policy down to the pump heads
        policy = demo.station.docs.policy
        assert policy is not None and isinstance(demo.board, type(demo.board))
        assert demo.board.prices(0) == [policy.prices_idr["pertalite"], policy.prices_idr["solar"]]
    finally:
        demo.close()
