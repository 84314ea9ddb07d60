"""A short crash campaign as part of `make test`; the long one is run by hand (see its docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.crash_campaign import run_campaign

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_twenty_kills_no_violation(tmp_path: Path) -> None:
    result = run_campaign(kills=20, seed=3, deadline_s=240, workdir=tmp_path)
    assert result.kills == 20
    assert result.violations == []
    assert result.sessions > 0 and result.litres_ml > 0  # the campaign really fuelled
    assert result.killpoint_kills, "no named kill point was hit"


def test_dart_pumps_eight_kills_no_violation(tmp_path: Path) -> None:
    result = run_campaign(kills=8, seed=4, deadline_s=180, workdir=tmp_path, pump_kind="dart")
    assert result.kills == 8
    assert result.violations == []
    assert result.sessions > 0 and result.litres_ml > 0


def test_multi_grade_dart_pumps_eight_kills_no_violation(tmp_path: Path) -> None:
    """Two grades per DART pump: scans before and after the lift, wrong grades lifted; per
    nozzle, the pump's own totals equal the litres journaled for that grade."""
    result = run_campaign(kills=8, seed=6, deadline_s=180, workdir=tmp_path, pump_kind="dart", nozzles=2)
    assert result.kills == 8
    assert result.violations == []
    assert result.sessions > 0 and result.litres_ml > 0


def test_payments_ten_kills_no_charge_without_delivery(tmp_path: Path) -> None:
    """Kills around payment steps (sale journaled/sent, approval received/journaled, void or
    refund journaled/sent): the terminal's own ledger never holds a charge that fuel
    delivered or an automatic void/refund does not match, and nothing is charged twice."""
    result = run_campaign(kills=10, seed=5, deadline_s=180, workdir=tmp_path, payments=True)
    assert result.kills == 10
    assert result.violations == []
    assert result.card_sales > 0 and result.compensations > 0  # it charged and gave back
    assert len(result.killpoint_kills) >= 3, result.killpoint_kills


def test_power_cuts_with_payments_lose_nothing_that_left_the_station(tmp_path: Path) -> None:
    """Each kill also takes the journal's writes not yet synced (20 ms syncs, as on an SD
    card): right after each cut, headquarters holds no record and the terminal no request
    that the journal lost; after recovery the usual checks hold."""
    result = run_campaign(kills=8, seed=7, deadline_s=180, workdir=tmp_path, payments=True, power_cut=True)
    assert result.kills == 8
    assert result.violations == []
    assert result.power_cuts_losing_writes > 0  # the cuts really took unsynced writes
    assert result.card_sales > 0 and result.sessions > 0
