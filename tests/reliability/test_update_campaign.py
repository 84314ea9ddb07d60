"""The update path's crash campaign (tests/reliability/update_campaign.py), every killpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.updates.store import STAGE_POINTS
from agent.updates.switch import SWITCH_POINTS
from tests.reliability.update_campaign import campaign

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_sigkill_at_every_step_of_install_and_switch_leaves_one_complete_release(tmp_path: Path) -> None:
    results = campaign(tmp_path)
    assert set(results) == {*STAGE_POINTS, *SWITCH_POINTS}
    for point, result in results.items():
        assert result["killed"], f"{point}: the update never reached it"
        assert not result["after_kill"]["problems"], (point, result)
        assert not result["then"]["problems"], (point, result)
