"""Eligibility and preset decisions (agent/eligibility.py), the quota day, QR tokens
(agent/qr/tokens.py) and the attendant's wording (agent/messages.py). Pure logic, explicit times."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import eligibility as el
from agent.clock import local_day as quota_day
from agent.domain import PRODUCTS, STATUS_ACTIVE, STATUS_SUSPENDED
from agent.eligibility import MIN_PRESET_ML, decide
from agent.messages import LANGUAGES, attendant_line
from agent.trust.documents import AllowList, QuotaPolicy

PERTALITE = PRODUCTS["pertalite"]
SOLAR = PRODUCTS["solar"]

NOW = dt.datetime(2025, 3, 5, 3, 0, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2025, 3, 15, tzinfo=dt.UTC)

MOTORCYCLE = 1
CAR_PERTALITE = 2
CAR_SOLAR = 3
SUSPENDED_CAR = 4
ANGKOT = 5  # public passenger: both products
TRUCK_WITH_PERTALITE_BIT = 6  # public_6w_plus has no Pertalite limit in the policy
BIG_ID = 2**64 - 1  # a goods vehicle at the top of the id range


def make_allowlist(expires: str = "2025-03-15T00:00:00+00:00") -> AllowList:
    return AllowList.from_body({
        "version": 1,
        "created": "2025-03-01T00:00:00+00:00",
        "expires": expires,
        "entries": [
            [MOTORCYCLE, "motorcycle", PERTALITE, STATUS_ACTIVE, "B 1234 XYZ"],
            [CAR_PERTALITE, "private_car", PERTALITE, STATUS_ACTIVE, "D 55 AB"],
            [CAR_SOLAR, "private_car", SOLAR, STATUS_ACTIVE, "F 8 C"],
            [SUSPENDED_CAR, "private_car", PERTALITE | SOLAR, STATUS_SUSPENDED, "L 1 S"],
            [ANGKOT, "public_passenger_4w", PERTALITE | SOLAR, STATUS_ACTIVE, "N 77 K"],
            [TRUCK_WITH_PERTALITE_BIT, "public_6w_plus", PERTALITE | SOLAR, STATUS_ACTIVE, "BK 9 T"],
            [BIG_ID, "goods_4w", SOLAR, STATUS_ACTIVE, "KT 4 G"],
        ],
    })


def make_policy(
    expires: str = "2025-03-15T00:00:00+00:00", drop: tuple[str, ...] = (), **extra: Any
) -> QuotaPolicy:
    body: dict[str, Any] = {
        "version": 1,
        "created": "2025-03-01T00:00:00+00:00",
        "expires": expires,
        "limits_l": {
            "solar": {"private_car": 60, "public_passenger_4w": 80, "goods_4w": 80, "public_6w_plus": 200},
            "pertalite": {"motorcycle": 10, "private_car": 120, "public_passenger_4w": 120},
        },
        "prices_idr_per_l": {"pertalite": 10_000, "solar": 6_800},
        "max_fill_l": 50,
    }
    body.update(extra)
    for name in drop:
        del body[name]
    return QuotaPolicy.from_body(body)


ALLOWLIST = make_allowlist()
POLICY = make_policy()


def run(vehicle_id: int | None, product: str = "pertalite", used_ml: int = 0,
        requested_ml: int | None = 20_000, now: dt.datetime = NOW,
        allowlist: AllowList | None = ALLOWLIST, policy: QuotaPolicy | None = POLICY) -> el.Decision:
    return decide(vehicle_id, product, allowlist, policy, used_ml, requested_ml, now)


# --- decide ----------------------------------------------------------------------------


def test_ok_decision_carries_vehicle_and_numbers() -> None:
    d = run(CAR_PERTALITE, used_ml=30_000, requested_ml=20_000)
    assert d.ok and d.reason == ""
    assert d.vehicle is not None and d.vehicle.plate == "D 55 AB"
    assert d.vehicle_id == CAR_PERTALITE
    assert (d.limit_ml, d.used_ml, d.preset_ml, d.remaining_ml) == (120_000, 30_000, 20_000, 90_000)


def test_unknown_qr_when_no_vehicle_id() -> None:
    d = run(None)
    assert (d.ok, d.reason, d.vehicle, d.vehicle_id, d.preset_ml) == (False, el.UNKNOWN_QR, None, None, 0)


@pytest.mark.parametrize(("allowlist", "policy"), [(None, POLICY), (ALLOWLIST, None), (None, None)])
def test_no_list(allowlist: AllowList | None, policy: QuotaPolicy | None) -> None:
    d = run(MOTORCYCLE, allowlist=allowlist, policy=policy)
    assert (d.ok, d.reason, d.vehicle_id) == (False, el.NO_LIST, MOTORCYCLE)


def test_list_expired_at_the_instant_of_expiry() -> None:
    later_policy = make_policy(expires="2026-01-01T00:00:00+00:00")
    assert run(MOTORCYCLE, now=EXPIRES - dt.timedelta(microseconds=1), policy=later_policy).ok
    d = run(MOTORCYCLE, now=EXPIRES, policy=later_policy)
    assert (d.ok, d.reason, d.vehicle_id) == (False, el.LIST_EXPIRED, MOTORCYCLE)
    assert run(MOTORCYCLE, now=EXPIRES + dt.timedelta(days=30)).reason == el.LIST_EXPIRED


def test_policy_expired_at_the_instant_of_expiry() -> None:
    later_list = make_allowlist(expires="2026-01-01T00:00:00+00:00")
    assert run(MOTORCYCLE, now=EXPIRES - dt.timedelta(microseconds=1), allowlist=later_list).ok
    assert run(MOTORCYCLE, now=EXPIRES, allowlist=later_list).reason == el.LIST_EXPIRED


def test_expired_policy_alone_also_refuses() -> None:
    policy = make_policy(expires="2025-03-05T02:00:00+00:00")
    assert run(MOTORCYCLE, policy=policy).reason == el.LIST_EXPIRED
    allowlist = make_allowlist(expires="2025-03-05T09:59:59+07:00")  # 02:59:59 UTC
    assert run(MOTORCYCLE, allowlist=allowlist).reason == el.LIST_EXPIRED
    # Expiry in another offset, one second in the future: still valid.
    assert run(MOTORCYCLE, allowlist=make_allowlist(expires="2025-03-05T10:00:01+07:00")).ok


def test_not_registered_without_unregistered_cap() -> None:
    d = run(999)
    assert (d.ok, d.reason, d.vehicle, d.vehicle_id) == (False, el.NOT_REGISTERED, None, 999)
    policy = make_policy(unregistered_l={"pertalite": 0, "solar": 0})
    assert run(999, policy=policy).reason == el.NOT_REGISTERED


def test_unregistered_cap_from_policy() -> None:
    policy = make_policy(unregistered_l={"pertalite": 5})
    d = run(999, requested_ml=20_000, policy=policy)
    assert d.ok and d.vehicle is None and d.vehicle_id == 999
    assert (d.limit_ml, d.preset_ml) == (5_000, 5_000)
    assert run(999, requested_ml=3_000, policy=policy).preset_ml == 3_000
    exhausted = run(999, used_ml=4_950, policy=policy)
    assert (exhausted.ok, exhausted.reason) == (False, el.QUOTA_EXHAUSTED)
    # The cap is per product: none for Solar.
    assert run(999, product="solar", policy=policy).reason == el.NOT_REGISTERED


def test_suspended() -> None:
    d = run(SUSPENDED_CAR)
    assert (d.ok, d.reason, d.vehicle_id) == (False, el.SUSPENDED, SUSPENDED_CAR)
    assert d.vehicle is not None and d.vehicle.plate == "L 1 S"


@pytest.mark.parametrize(
    ("vehicle_id", "product"),
    [
        (MOTORCYCLE, "solar"),  # product bit not set
        (CAR_SOLAR, "pertalite"),
        (BIG_ID, "pertalite"),
        (TRUCK_WITH_PERTALITE_BIT, "pertalite"),  # bit set, but the policy gives its category nothing
    ],
)
def test_wrong_product(vehicle_id: int, product: str) -> None:
    d = run(vehicle_id, product=product)
    assert (d.ok, d.reason, d.vehicle_id) == (False, el.WRONG_PRODUCT, vehicle_id)
    assert d.vehicle is not None


def test_both_products_for_public_passenger() -> None:
    assert run(ANGKOT, product="pertalite").ok
    assert run(ANGKOT, product="solar").ok


def test_quota_exhausted_below_min_preset() -> None:
    limit = 10_000  # motorcycle, Pertalite
    at_min = run(MOTORCYCLE, used_ml=limit - MIN_PRESET_ML, requested_ml=None)
    assert at_min.ok and at_min.preset_ml == MIN_PRESET_ML
    d = run(MOTORCYCLE, used_ml=limit - MIN_PRESET_ML + 1, requested_ml=None)
    assert (d.ok, d.reason, d.vehicle_id) == (False, el.QUOTA_EXHAUSTED, MOTORCYCLE)
    assert (d.limit_ml, d.used_ml, d.preset_ml, d.remaining_ml) == (limit, limit - 99, 0, 99)
    over = run(MOTORCYCLE, used_ml=limit + 5_000)
    assert (over.reason, over.remaining_ml, over.preset_ml) == (el.QUOTA_EXHAUSTED, 0, 0)


def test_preset_is_min_of_requested_and_remaining() -> None:
    assert run(CAR_PERTALITE, used_ml=0, requested_ml=20_000).preset_ml == 20_000
    assert run(CAR_PERTALITE, used_ml=110_000, requested_ml=20_000).preset_ml == 10_000
    assert run(CAR_PERTALITE, used_ml=100_000, requested_ml=20_000).preset_ml == 20_000


def test_full_tank_uses_max_fill() -> None:
    # Solar for a 6-wheeler: 200 L a day, but one full tank is capped by max_fill_l = 50 L.
    d = run(TRUCK_WITH_PERTALITE_BIT, product="solar", requested_ml=None)
    assert d.ok and (d.limit_ml, d.preset_ml) == (200_000, 50_000)
    # Less left than a full tank: what is left.
    d = run(TRUCK_WITH_PERTALITE_BIT, product="solar", used_ml=170_000, requested_ml=None)
    assert d.preset_ml == 30_000
    # A policy without max_fill_l fills up to 200 L.
    default_policy = make_policy(drop=("max_fill_l",))
    assert run(TRUCK_WITH_PERTALITE_BIT, product="solar", requested_ml=None,
               policy=default_policy).preset_ml == 200_000
    # An explicit request is not capped by max_fill_l, only by what is left.
    assert run(TRUCK_WITH_PERTALITE_BIT, product="solar", requested_ml=80_000).preset_ml == 80_000


@settings(max_examples=200, deadline=None)
@given(
    vehicle_id=st.sampled_from([MOTORCYCLE, CAR_PERTALITE, ANGKOT]),
    used_ml=st.integers(0, 130_000),
    requested_ml=st.none() | st.integers(MIN_PRESET_ML, 300_000),
)
def test_preset_never_exceeds_remaining(vehicle_id: int, used_ml: int, requested_ml: int | None) -> None:
    d = run(vehicle_id, used_ml=used_ml, requested_ml=requested_ml)
    limit = POLICY.limit_ml("pertalite", "motorcycle" if vehicle_id == MOTORCYCLE else "private_car")
    want = POLICY.max_fill_ml if requested_ml is None else requested_ml
    assert d.limit_ml == limit
    if limit - used_ml >= MIN_PRESET_ML:
        assert d.ok
        assert d.preset_ml == min(want, limit - used_ml)
        assert used_ml + d.preset_ml <= limit
        assert d.preset_ml >= MIN_PRESET_ML
    else:
        assert (d.ok, d.reason, d.preset_ml) == (False, el.QUOTA_EXHAUSTED, 0)


# --- quota day -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "boundary_hour_utc"),
    [("WIB", 17), ("WITA", 16), ("WIT", 15)],
)
def test_quota_day_boundary(zone: str, boundary_hour_utc: int) -> None:
    midnight = dt.datetime(2025, 3, 5, boundary_hour_utc, 0, 0, tzinfo=dt.UTC)
    before = midnight - dt.timedelta(seconds=1)
    assert quota_day(before, zone) == "2025-03-05"
    assert quota_day(midnight, zone) == "2025-03-06"
    assert quota_day(midnight - dt.timedelta(microseconds=1), zone) == "2025-03-05"


def test_quota_day_wib_16_59_59_vs_17_00_00() -> None:
    assert quota_day(dt.datetime(2025, 3, 5, 16, 59, 59, tzinfo=dt.UTC), "WIB") == "2025-03-05"
    assert quota_day(dt.datetime(2025, 3, 5, 17, 0, 0, tzinfo=dt.UTC), "WIB") == "2025-03-06"


def test_quota_day_differs_between_zones_at_the_same_instant() -> None:
    instant = dt.datetime(2025, 3, 5, 15, 30, tzinfo=dt.UTC)
    days = [quota_day(instant, zone) for zone in ("WIB", "WITA", "WIT")]
    assert days == ["2025-03-05", "2025-03-05", "2025-03-06"]


def test_quota_day_crosses_year_and_leap_day() -> None:
    assert quota_day(dt.datetime(2024, 12, 31, 17, 0, tzinfo=dt.UTC), "WIB") == "2025-01-01"
    assert quota_day(dt.datetime(2024, 2, 28, 16, 0, tzinfo=dt.UTC), "WITA") == "2024-02-29"


def test_quota_day_ignores_the_offset_the_instant_is_written_in() -> None:
    utc = dt.datetime(2025, 3, 5, 16, 59, 59, tzinfo=dt.UTC)
    for hours in (-5, 0, 7, 9, 14):
        written = utc.astimezone(dt.timezone(dt.timedelta(hours=hours)))
        assert quota_day(written, "WIB") == "2025-03-05"


def test_quota_day_unknown_zone() -> None:
    with pytest.raises(KeyError):
        quota_day(NOW, "UTC")


# --- attendant wording -----------------------------------------------------------------


def test_ok_line_in_indonesian_uses_decimal_comma() -> None:
    line = attendant_line("id", "ok", pump=2, plate="B 1234 XYZ", product="pertalite",
                          remaining_ml=12_500, preset_ml=10_000)
    assert line == "BOLEH ISI  pompa 2  B 1234 XYZ  Pertalite  sisa kuota 12,50 L, preset 10,00 L"


def test_ok_line_in_english_uses_decimal_point() -> None:
    line = attendant_line("en", "ok", pump=2, plate="B 1234 XYZ", product="solar",
                          remaining_ml=12_500, preset_ml=10_000)
    assert line == "GO AHEAD  pump 2  B 1234 XYZ  Solar  quota left 12.50 L, preset 10.00 L"


@pytest.mark.parametrize(
    ("lang", "amount", "litres", "expected"),
    [
        ("id", 1_234, 123_450, "123,45 L  Rp 1.234"),
        ("id", 1_234_567, 1_000, "1,00 L  Rp 1.234.567"),
        ("id", 999, 10, "0,01 L  Rp 999"),
        ("en", 1_234, 123_450, "123.45 L  Rp 1,234"),
        ("en", 1_234_567, 1_000, "1.00 L  Rp 1,234,567"),
    ],
)
def test_done_line_groups_rupiah(lang: str, amount: int, litres: int, expected: str) -> None:
    line = attendant_line(lang, "done", pump=1, plate="D 55 AB", product="pertalite",
                          litres_ml=litres, amount_idr=amount)
    assert line.endswith(expected)
    assert line.startswith("SELESAI" if lang == "id" else "DONE")


def test_quota_exhausted_line_shows_used_and_limit() -> None:
    d = run(MOTORCYCLE, used_ml=9_950)
    assert d.reason == el.QUOTA_EXHAUSTED
    line = attendant_line("id", d.reason, pump=3, plate="B 1234 XYZ", product="pertalite",
                          used_ml=d.used_ml, limit_ml=d.limit_ml)
    assert line.endswith("kuota harian Pertalite habis (terpakai 9,95 dari 10,00 L), kembali pukul 00.00 WIB")
    line = attendant_line("en", d.reason, pump=3, plate="B 1234 XYZ", product="pertalite",
                          used_ml=d.used_ml, limit_ml=d.limit_ml)
    assert line.endswith("daily Pertalite quota used up (9.95 of 10.00 L), resets at 00:00 WIB")


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    "reason",
    [el.NOT_REGISTERED, el.SUSPENDED, el.WRONG_PRODUCT, el.QUOTA_EXHAUSTED, el.NO_LIST,
     el.LIST_EXPIRED, el.PUMP_BUSY, el.VEHICLE_BUSY, el.PUMP_UNAVAILABLE],
)
def test_every_refusal_reason_has_its_own_wording(lang: str, reason: str) -> None:
    fallback = attendant_line(lang, el.UNKNOWN_QR, pump=1)
    line = attendant_line(lang, reason, pump=1, plate="B 1 A", product="solar")
    assert line and line != fallback
    assert line.startswith("DITOLAK" if lang == "id" else "REFUSED")


def test_missing_plate_shows_dash_and_unknown_key_falls_back() -> None:
    assert attendant_line("en", el.SUSPENDED, pump=4) == "REFUSED   pump 4  -  vehicle suspended"
    assert attendant_line("id", "no_such_reason", pump=4) == attendant_line("id", el.UNKNOWN_QR, pump=4)
    assert attendant_line("id", "duplicate", pump=4) == ""


# --- offline caps ----------------------------------------------------------------------------


def test_fresh_list_is_not_offline_and_uncapped() -> None:
    policy = make_policy(offline_after_h=24 * 30, offline_caps_l={"pertalite": 20})
    d = run(CAR_PERTALITE, requested_ml=None, policy=policy)
    assert d.ok and not d.offline
    assert d.preset_ml == 50_000  # max fill, the 120 L limit not touched


def test_stale_list_serves_under_the_offline_cap_never_unchecked() -> None:
    policy = make_policy(offline_after_h=48, offline_caps_l={"pertalite": 20})
    d = run(CAR_PERTALITE, requested_ml=None, used_ml=5_000, policy=policy)  # list is 4 days old
    assert d.ok and d.offline
    assert d.limit_ml == 20_000 and d.preset_ml == 15_000
    refused = run(CAR_PERTALITE, used_ml=20_000, policy=policy)
    assert not refused.ok and refused.reason == el.QUOTA_EXHAUSTED and refused.offline
    # the other checks still apply while offline
    assert run(SUSPENDED_CAR, policy=policy).reason == el.SUSPENDED
    assert run(MOTORCYCLE, "solar", policy=policy).reason == el.WRONG_PRODUCT


def test_offline_cap_of_zero_stops_sales_of_that_product() -> None:
    policy = make_policy(offline_after_h=48, offline_caps_l={"solar": 0})
    d = run(CAR_SOLAR, "solar", policy=policy)
    assert not d.ok and d.reason == el.QUOTA_EXHAUSTED


def test_offline_cap_never_raises_a_lower_category_limit() -> None:
    policy = make_policy(offline_after_h=48, offline_caps_l={"pertalite": 60})
    d = run(MOTORCYCLE, requested_ml=None, policy=policy)
    assert d.limit_ml == 10_000 and d.preset_ml == 10_000


@pytest.mark.parametrize("bad", [{"diesel": 5}, {"solar": -1}, [], {"solar": True}])
def test_bad_offline_caps_are_rejected(bad: object) -> None:
    from agent.trust.documents import DocumentError

    with pytest.raises(DocumentError, match="offline_caps_l"):
        make_policy(offline_caps_l=bad)
