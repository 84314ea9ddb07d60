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

    @property
    def remaining_ml(self) -> int:
        return max(0, self.limit_ml - self.used_ml)


def decide(
    vehicle_id: int | None,
    product: str,
    allowlist: AllowListView | None,
    policy: QuotaPolicy | None,
    used_ml: int,
    requested_ml: int | None,
    now_utc: dt.datetime,
    freeze: FreezePolicy | None = None,
) -> Decision:
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
        limit = policy.unregistered_ml.get(product, 0)
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
    remaining = category_limit - used_ml
    want = policy.max_fill_ml if requested_ml is None else requested_ml
    preset = min(want, remaining)
    if preset < MIN_PRESET_ML:
        return Decision(False, QUOTA_EXHAUSTED, vehicle, vehicle_id, category_limit, used_ml, offline=offline)
    return Decision(True, "", vehicle, vehicle_id, category_limit, used_ml, preset, offline)
