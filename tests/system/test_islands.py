"""A station of several islands, all at once: 8 fuelling points with 16 nozzles on two
DART lines (or two relay boards), one EDC terminal per island paying card customers on
both at the same time, tanks drained by every nozzle; everything reconciles per pump,
per nozzle and per tank."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.demo import DemoStation, script_customers
from simulators.broker import MosquittoBroker
from simulators.forecourt import Forecourt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("kind, pumps, nozzles", [("dart", 8, 2), ("relay", 4, 1)])
def test_two_islands_fuel_and_pay_at_once(mosquitto: MosquittoBroker, tmp_path: Path, kind: str, pumps: int,
                                          nozzles: int) -> None:
    demo = DemoStation(pumps=pumps, broker=mosquitto, workdir=tmp_path / "demo", quiet=True, pump_kind=kind,
                       nozzles=nozzles, islands=2, edc=True, tanks=True, flow_lps=10.0)
    try:
        demo.start(timeout_s=40)
        assert isinstance(demo.board, Forecourt) and len(demo.board.lines) == 2 and len(demo.edcs) == 2
        config = demo.config()
        assert {p.line for p in config.pumps} == {0, 1} and config.more_edcs
        assert sum(len(p.nozzle_products) for p in config.pumps) == pumps * nozzles
        script = script_customers(demo.registry, demo.products, pumps * 2, demo.token, payments=True,
                                  grades=demo.grades, card_pumps=demo.card_pumps())
        outcomes = demo.serve(script, timeout_s=120)
        demo.wait_delivered(30)
        assert len(outcomes) == len(script)
        for outcome in outcomes:
            assert outcome.as_expected, (outcome.customer, outcome.decision, outcome.payment_outcome)
        result = demo.reconcile()
        demo.reconcile_tanks(result, leak=False)
        assert result.ok, result.differences
        # each island's terminal charged its own island's card customers
        card = [o for o in outcomes if o.customer.payment == "card"]
        assert {demo.island_of[o.customer.pump] for o in card} == {0, 1}
        for island, terminal in enumerate(demo.edcs):
            approved = [r for r in terminal.ledger() if r["type"] == "01" and r["response"] == "00"]
            assert approved, f"island {island + 1}'s terminal charged nothing"
        if nozzles > 1:
            assert all(row["totaliser_ml"] > 0 for row in result.summary["nozzles"].values())
    finally:
        demo.close()
