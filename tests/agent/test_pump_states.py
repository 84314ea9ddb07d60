"""The pump state table: every state reachable from IDLE, sessions end only in IDLE or
CALLING, and nothing leaves a session state except through the table."""

from __future__ import annotations

import pytest

from agent import pump_states as s


def test_every_state_is_reachable_from_idle() -> None:
    seen, todo = {s.IDLE}, [s.IDLE]
    while todo:
        for nxt in s.TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(s.STATES)


def test_sessions_end_only_where_a_new_scan_can_start() -> None:
    for state in s.WITH_SESSION:
        leaving = [n for n in s.TRANSITIONS[state] if n not in s.WITH_SESSION]
        assert set(leaving) <= {s.IDLE, s.CALLING}, state


@pytest.mark.parametrize(("current", "new"), [(s.RECOVERING, s.AUTHORISED), (s.STOPPING, s.FUELLING),
                                              (s.INOPERATIVE, s.AUTHORISED), (s.CLOSED, s.AUTHORISED)])
def test_forbidden_transitions_raise(current: str, new: str) -> None:
    with pytest.raises(s.IllegalTransition):
        s.check_transition(current, new)


def test_a_restart_can_never_lead_straight_back_to_fuel() -> None:
    # RECOVERING must pass through IDLE/CALLING (a new scan) before AUTHORISED.
    assert s.AUTHORISED not in s.TRANSITIONS[s.RECOVERING]
    assert s.FUELLING not in s.TRANSITIONS[s.RECOVERING]
