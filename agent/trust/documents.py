"""The signed documents the station obeys: the vehicle allow-list and the quota/price policy.

Bodies are validated field by field after the signature check; anything malformed is
rejected with a message that names the field, and the previous document stays in force.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.domain import CATEGORIES, PRODUCTS, STATUS_ACTIVE, STATUS_SUSPENDED

ALLOWLIST_KIND = "allowlist"
POLICY_KIND = "policy"


class DocumentError(ValueError):
    pass


@dataclass(frozen=True)
class Vehicle:
    vehicle_id: int
    category: str
    products: int  # bitmask of PRODUCTS
    status: str
    plate: str

    def allows(self, product: str) -> bool:
        return bool(self.products & PRODUCTS[product])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def _int(body: dict[str, Any], name: str, minimum: int = 0) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DocumentError(f"field {name!r} must be an integer >= {minimum}")
    return value


def _time(body: dict[str, Any], name: str) -> dt.datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise DocumentError(f"field {name!r} must be an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise DocumentError(f"field {name!r} must be an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise DocumentError(f"field {name!r} needs a UTC offset")
    return parsed


@dataclass(frozen=True)
class AllowList:
    version: int
    created: dt.datetime
    expires: dt.datetime
    vehicles: dict[int, Vehicle]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> AllowList:
        entries = body.get("entries")
        if not isinstance(entries, list):
            raise DocumentError("field 'entries' must be a list")
        vehicles: dict[int, Vehicle] = {}
        all_products = sum(PRODUCTS.values())
        for index, entry in enumerate(entries):
            if not (isinstance(entry, list) and len(entry) == 5):
                raise DocumentError(f"entry {index} must be [id, category, products, status, plate]")
            vid, category, products, status, plate = entry
            if not _is_int(vid) or not 0 < vid < 2**64:
                raise DocumentError(f"entry {index}: vehicle id must be a 64-bit integer")
            if category not in CATEGORIES:
                raise DocumentError(f"entry {index}: unknown category {category!r}")
            if not _is_int(products) or products & ~all_products:
                raise DocumentError(f"entry {index}: bad product mask")
            if status not in (STATUS_ACTIVE, STATUS_SUSPENDED):
                raise DocumentError(f"entry {index}: bad status {status!r}")
            if not isinstance(plate, str) or not 0 < len(plate) <= 16:
                raise DocumentError(f"entry {index}: bad plate")
            if vid in vehicles:
                raise DocumentError(f"entry {index}: duplicate vehicle id {vid}")
            vehicles[vid] = Vehicle(vid, category, products, status, plate)
        return cls(_int(body, "version", 1), _time(body, "created"), _time(body, "expires"), vehicles)

    def lookup(self, vehicle_id: int) -> Vehicle | None:
        return self.vehicles.get(vehicle_id)


@dataclass(frozen=True)
class QuotaPolicy:
    version: int
    created: dt.datetime
    expires: dt.datetime
    limits_ml: dict[str, dict[str, int]]  # product -> category -> ml per local day
    unregistered_ml: dict[str, int]  # product -> ml per day for vehicles not on the list
    prices_idr: dict[str, int]  # product -> Rupiah per litre
    max_fill_ml: int  # preset when the customer asks for a full tank
    offline_after_s: float = 48 * 3600  # allow-list older than this: offline caps apply
    offline_caps_ml: dict[str, int] | None = None  # product -> ml per vehicle per day when offline
    # Security switches (agent/qr/token_policy.py): unsigned legacy QR texts accepted at all;
    # the oldest a signed token may be; per vehicle, the issue date before which its tokens
    # are revoked (a reissued QR).
    legacy_qr: bool = True
    max_token_age_days: int | None = None
    token_min_issued: dict[int, dt.date] = field(default_factory=dict)
    # National quota (agent/national_usage.py); None: no feed configured, local usage only.
    usage_stale_after_s: float | None = None
    usage_offline_share: float | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> QuotaPolicy:
        limits = body.get("limits_l")
        prices = body.get("prices_idr_per_l")
        unregistered = body.get("unregistered_l", {})
        if not isinstance(limits, dict) or not isinstance(prices, dict):
            raise DocumentError("fields 'limits_l' and 'prices_idr_per_l' must be objects")
        if not isinstance(unregistered, dict):
            raise DocumentError("field 'unregistered_l' must be an object")
        limits_ml: dict[str, dict[str, int]] = {}
        for product, per_category in limits.items():
            if product not in PRODUCTS or not isinstance(per_category, dict):
                raise DocumentError(f"limits_l: unknown product {product!r}")
            limits_ml[product] = {}
            for category, litres in per_category.items():
                if category not in CATEGORIES:
                    raise DocumentError(f"limits_l.{product}: unknown category {category!r}")
                limits_ml[product][category] = _litres(litres, f"limits_l.{product}.{category}")
        prices_idr: dict[str, int] = {}
        for product, price in prices.items():
            if product not in PRODUCTS:
                raise DocumentError(f"prices_idr_per_l: unknown product {product!r}")
            if not isinstance(price, int) or isinstance(price, bool) or price <= 0:
                raise DocumentError(f"prices_idr_per_l.{product} must be a positive integer")
            prices_idr[product] = price
        unregistered_ml = {
            p: _litres(v, f"unregistered_l.{p}") for p, v in unregistered.items() if p in PRODUCTS
        }
        return cls(
            version=_int(body, "version", 1),
            created=_time(body, "created"),
            expires=_time(body, "expires"),
            limits_ml=limits_ml,
            unregistered_ml=unregistered_ml,
            prices_idr=prices_idr,
            max_fill_ml=_litres(body.get("max_fill_l", 200), "max_fill_l"),
            offline_after_s=_hours(body.get("offline_after_h", 48), "offline_after_h") * 3600,
            offline_caps_ml=_caps(body.get("offline_caps_l", {})),
            legacy_qr=_flag(body.get("legacy_qr", True), "legacy_qr"),
            max_token_age_days=_max_age(body.get("max_token_age_days")),
            token_min_issued=_min_issued(body.get("token_min_issued", {})),
            **_usage_feed(body.get("usage_feed")),
        )

    def limit_ml(self, product: str, category: str) -> int:
        return self.limits_ml.get(product, {}).get(category, 0)


def _litres(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10_000:
        raise DocumentError(f"{name} must be litres between 0 and 10000")
    return round(value * 1000)


def _hours(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 365:
        raise DocumentError(f"{name} must be hours between 0 and 8760")
    return float(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise DocumentError(f"{name} must be true or false")
    return value


def _max_age(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3650:
        raise DocumentError("max_token_age_days must be an integer 1..3650")
    return value


MAX_REVOCATIONS = 100_000  # about 3.5 MB of JSON: the policy stays under the 4 MiB message limit


def _min_issued(value: object) -> dict[int, dt.date]:
    """{"<vehicle id>": "YYYY-MM-DD"}: tokens of that vehicle issued before the date are revoked."""
    if not isinstance(value, dict) or len(value) > MAX_REVOCATIONS:
        raise DocumentError(f"token_min_issued must be an object of at most {MAX_REVOCATIONS} vehicles")
    result = {}
    for vid, day in value.items():
        try:
            number = int(vid)
            if not 0 < number < 2**64 or not isinstance(day, str):
                raise ValueError(vid)
            result[number] = dt.date.fromisoformat(day)
        except ValueError:
            raise DocumentError(f"token_min_issued: {vid!r} must be a vehicle id with a YYYY-MM-DD date") from None
    return result


def _usage_feed(value: object) -> dict[str, float | None]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DocumentError("usage_feed must be an object")
    stale, share = value.get("stale_after_s"), value.get("offline_share")
    if isinstance(stale, bool) or not isinstance(stale, int | float) or not 0 < stale <= 86_400:
        raise DocumentError("usage_feed.stale_after_s must be seconds between 0 and 86400")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise DocumentError("usage_feed.offline_share must be a fraction between 0 and 1")
    return {"usage_stale_after_s": float(stale), "usage_offline_share": float(share)}


def _caps(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise DocumentError("offline_caps_l must be an object")
    caps = {}
    for product, litres in value.items():
        if product not in PRODUCTS:
            raise DocumentError(f"offline_caps_l: unknown product {product!r}")
        caps[product] = _litres(litres, f"offline_caps_l.{product}")
    return caps


class AllowListView(Protocol):
    """What eligibility needs of an allow-list (agent/allowlist_repo.SignedAllowList)."""

    @property
    def version(self) -> int: ...
    @property
    def created(self) -> dt.datetime: ...
    @property
    def expires(self) -> dt.datetime: ...
    def lookup(self, vehicle_id: int) -> Vehicle | None: ...
