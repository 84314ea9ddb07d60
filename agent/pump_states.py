"""Fuelling-point states, modelled on IFSF, and the transitions the agent may make.

    INOPERATIVE  the relay board is unreachable or its E-stop is latched
    CLOSED       locked by the station manager
    IDLE         ready for a scan
    CALLING      nozzle lifted, nobody authorised it yet
    AUTHORISED   session journaled, relay closed, waiting for the nozzle
    FUELLING     nozzle lifted inside a session
    STOPPING     the agent asked the board to stop; waiting for its final count
    RECOVERING   a session from before a restart, waiting for the board's count

A fill that ends goes back to IDLE (or CALLING while the nozzle is still up) once the
journal has the transaction: "Completed" is a journal state, not a pump state, until
post-payment lands. Any transition not in the table is a bug and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import grades
from agent.config import PumpConfig
from agent.journal import SessionRow

INOPERATIVE = "inoperative"
CLOSED = "closed"
IDLE = "idle"
CALLING = "calling"
AUTHORISED = "authorised"
FUELLING = "fuelling"
STOPPING = "stopping"
RECOVERING = "recovering"

STATES = (INOPERATIVE, CLOSED, IDLE, CALLING, AUTHORISED, FUELLING, STOPPING, RECOVERING)
WITH_SESSION = (AUTHORISED, FUELLING, STOPPING, RECOVERING)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    INOPERATIVE: (IDLE, CALLING, RECOVERING),
    CLOSED: (IDLE, CALLING, INOPERATIVE),
    IDLE: (CALLING, AUTHORISED, INOPERATIVE, CLOSED, RECOVERING),
    CALLING: (IDLE, AUTHORISED, INOPERATIVE, CLOSED),
    AUTHORISED: (FUELLING, STOPPING, IDLE, CALLING),
    FUELLING: (STOPPING, IDLE, CALLING),
    STOPPING: (IDLE, CALLING),
    RECOVERING: (IDLE, CALLING),
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(current: str, new: str) -> None:
    if new != current and new not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current} -> {new}")


def after_session(nozzle_up: bool) -> str:
    return CALLING if nozzle_up else IDLE


@dataclass
class PumpRuntime:
    """What the station knows about one fuelling point between two events."""

    config: PumpConfig
    session: SessionRow | None = None
    state: str = INOPERATIVE  # until the relay board answers
    opened_mono: float = 0.0
    nozzle_up: bool = False
    pulses: int = 0
    last_flow_mono: float = 0.0
    stop_sent_mono: float = 0.0
    last_scan: tuple[str, float] = ("", 0.0)
    scanner_connected: bool = False
    last_query_mono: float = 0.0
    verify_after_hello: bool = False  # the board rebooted: does it still know this session?
    device_total: int | None = None  # the device's own totaliser, last reported (its units)
    out_of_service: bool = False  # its line is up but the pump does not answer
    lifted: int = 0  # the logical nozzle out of its holster (multi-grade pumps)
    pending: grades.PendingLift | None = None  # scanned before the lift: eligible grades
    nozzle_totals: tuple[int, ...] = ()  # the pump's totals per logical nozzle, last reported
    cap_ml: int | None = None  # usage elsewhere arrived mid-fill: stop here (below the preset)
