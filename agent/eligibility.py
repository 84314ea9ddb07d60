"""Eligibility and preset decision: pure logic, no I/O.

Preset = min(requested, remaining daily quota). Remaining counts both litres already
dispensed today and litres reserved by sessions still open, so two pumps can never
spend the same quota.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.allowlist.freeze import CLOSED, FRESH, FreezePolicy
from agent.domain import STATUS_SUSPENDED
from agent.national_usage import Elsewhere
from agent.trust.documents import AllowListView, QuotaPolicy, Vehicle

# Refusal reasons (codes are stable; agent/messages.py words them for the attendant).
UNKNOWN_QR = "unknown_qr"
NOT_REGISTERED = "not_registered"
SUSPENDED = "suspended"
WRONG_PRODUCT = "wrong_product"
QUOTA_EXHAUSTED = "quota_exhausted"
NO_LIST = "no_list"
LIST_EXPIRED = "list_expired"
PUMP_BUSY = "pump_busy"
VEHICLE_BUSY = "vehicle_busy"
PUMP_UNAVAILABLE = "pump_unavailable"
QUOTA_USED_ELSEWHERE = "quota_used_elsewhere"  # this station's sales alone would allow it
OFFLINE_SHARE_USED = "offline_share_used"  # the usage feed is stale and the signed share is sold

# The smallest preset worth opening a relay for (one pulse at 100 pulses/L is 10 ml).
MIN_PRESET_ML = 100


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str  # "" when ok
    vehicle: Vehicle | None = None
    vehicle_id: int | None = None
    limit_ml: int = 0
    used_ml: int = 0  # dispensed plus reserved today
    preset_ml: int = 0
    offline: bool = False  # the list is stale: the policy's offline caps applied
    elsewhere_ml: int = 0  # used and reserved today at other stations (headquarters' feed)
    share_capped: bool = False  # the usage feed is stale: the signed offline share applied

    @property
    def remaining_ml(self) -> int:
        return max(0, self.limit_ml - self.used_ml - self.elsewhere_ml)


def decide(
    vehicle_id: int | None,
    product: str,
    allowlist: AllowListView | None,
    policy: QuotaPolicy | None,
    used_ml: int,
    requested_ml: int | None,
    now_utc: dt.datetime,
    freeze: FreezePolicy | None = None,
    elsewhere: Elsewhere | None = None,
    legacy: bool = False,
) -> Decision:
    """used_ml: this station's own (dispensed + reserved); elsewhere: other stations' (the feed).
    legacy: the id came from an unsigned legacy text, which anyone can invent: it gets what
    its allow-list entry gives, never the allowance for unregistered vehicles."""
    if vehicle_id is None:
        return Decision(False, UNKNOWN_QR)
    if allowlist is None or policy is None:
        return Decision(False, NO_LIST, vehicle_id=vehicle_id)
    # An expired list: without a freeze policy, refuse; with one, its grace period serves
    # under the offline caps (agent/allowlist/freeze.py says why).
    frozen = FRESH if freeze is None and now_utc < allowlist.expires else (
        freeze.state(now_utc, allowlist.expires) if freeze is not None else CLOSED)
    if frozen == CLOSED or now_utc >= policy.expires:
        return Decision(False, LIST_EXPIRED, vehicle_id=vehicle_id)
    vehicle = allowlist.lookup(vehicle_id)
    if vehicle is None:
        limit = 0 if legacy else policy.unregistered_ml.get(product, 0)
        if limit <= 0:
            return Decision(False, NOT_REGISTERED, vehicle_id=vehicle_id)
        category_limit = limit
    else:
        if vehicle.status == STATUS_SUSPENDED:
            return Decision(False, SUSPENDED, vehicle, vehicle_id)
        if not vehicle.allows(product):
            return Decision(False, WRONG_PRODUCT, vehicle, vehicle_id)
        category_limit = policy.limit_ml(product, vehicle.category)
        if category_limit <= 0:
            return Decision(False, WRONG_PRODUCT, vehicle, vehicle_id)
    # A list that has not been refreshed for long may miss revocations: serve, but within
    # the policy's offline caps (never unchecked).
    offline = (now_utc - allowlist.created).total_seconds() > policy.offline_after_s or frozen != FRESH
    if offline and policy.offline_caps_ml and product in policy.offline_caps_ml:
        category_limit = min(category_limit, policy.offline_caps_ml[product])
    return _preset(vehicle, vehicle_id, category_limit, used_ml, requested_ml, policy, offline,
                   elsewhere or Elsewhere())


def _preset(vehicle: Vehicle | None, vehicle_id: int, limit: int, used_ml: int, requested_ml: int | None,
            policy: QuotaPolicy, offline: bool, elsewhere: Elsewhere) -> Decision:
    """Count nationally: what is left after this station's and the other stations' usage; with
    a stale feed, at most the signed offline share of the quota at this station."""
    remaining = limit - used_ml - elsewhere.total_ml
    capped = False
    if elsewhere.stale and elsewhere.offline_share is not None:
        share_left = int(limit * elsewhere.offline_share) - used_ml
        capped = share_left < remaining
        remaining = min(remaining, share_left)
    want = policy.max_fill_ml if requested_ml is None else requested_ml
    preset = min(want, remaining)
    if preset < MIN_PRESET_ML:
        if capped:
            reason = OFFLINE_SHARE_USED
        elif elsewhere.total_ml > 0 and limit - used_ml >= MIN_PRESET_ML:
            reason = QUOTA_USED_ELSEWHERE
        else:
            reason = QUOTA_EXHAUSTED
        return Decision(False, reason, vehicle, vehicle_id, limit, used_ml, offline=offline,
                        elsewhere_ml=elsewhere.total_ml, share_capped=capped)
    return Decision(True, "", vehicle, vehicle_id, limit, used_ml, preset, offline, elsewhere.total_ml,
                    capped and preset == remaining)
