"""What the station does with an allow-list past its expiry (the link down for a week, say).

The default, 72 hours of grace then fail closed: a long weekend or a regional outage must
not stop subsidised sales, so for three days the expired list keeps serving, under the
policy's offline caps and with a visible alarm. After that the list may miss any number of
revocations (stolen or abused ids keep drawing subsidy), so eligibility refuses with
"list expired" until a fresh list arrives: the outage becomes a visible business problem
instead of silent leakage. Stations where refusing is worse may configure `offline_caps`,
which keeps serving under the offline caps indefinitely.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

FAIL_CLOSED = "fail_closed"
OFFLINE_CAPS = "offline_caps"
AFTER_GRACE = (FAIL_CLOSED, OFFLINE_CAPS)

FRESH = "fresh"
GRACE = "grace"  # expired, within the grace period: serve under offline caps, alarm raised
CAPPED = "capped"  # expired, past grace, policy offline_caps: serve under offline caps, alarm
CLOSED = "closed"  # expired, past grace, policy fail_closed: refuse


@dataclass(frozen=True)
class FreezePolicy:
    grace_h: float = 72.0
    after_grace: str = FAIL_CLOSED

    def state(self, now: dt.datetime, expires: dt.datetime) -> str:
        if now < expires:
            return FRESH
        if now < expires + dt.timedelta(hours=self.grace_h):
            return GRACE
        return CAPPED if self.after_grace == OFFLINE_CAPS else CLOSED
