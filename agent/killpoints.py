"""Named crash points for the crash campaign: with SPBU_KILLPOINT=name[:n] in the
environment, the agent SIGKILLs itself the n-th time (default first) it passes `name`.

This is how the campaign kills the agent *between* two specific steps (journal written,
relay not yet told; transaction closed, not yet published ...), which random-time kills
hit only rarely. Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "session_journaled",  # session + reservation committed, AUTHORIZE not yet sent
    "authorize_sent",  # AUTHORIZE handed to the board driver
    "fuelling",  # nozzle lifted, fuel flowing (the journal still holds the session as authorised)
    "stop_requested",  # STOP sent after a timeout
    "before_close",  # END received, close not yet journaled
    "close_journaled",  # session closed and outbox row committed, nothing published
    "published",  # outbox rows handed to the MQTT client
    "ack_applied",  # acknowledged rows deleted from the outbox
)
# Around payments on the EDC terminal (agent/payments/desk.py); the payment campaign uses these.
PAYMENT_POINTS = (
    "pay_before_charge",  # sale step journaled, not yet handed to the terminal
    "pay_charge_sent",  # sale handed to the terminal driver
    "pay_approval_received",  # approval in hand, not yet journaled
    "pay_approval_journaled",  # approval journaled; prepay: session not yet opened
    "pay_before_compensation",  # void/refund step journaled, not yet sent
    "pay_compensation_sent",  # void/refund handed to the terminal driver
    "pay_compensation_journaled",  # its answer journaled
    "pay_settled",  # payment done, its transaction record queued
)

_target, _, _count = os.environ.get("SPBU_KILLPOINT", "").partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def killpoint(name: str) -> None:
    global _remaining
    if name != _target:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
