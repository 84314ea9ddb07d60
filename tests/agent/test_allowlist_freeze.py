"""Freeze policy: an expired allow-list serves for a grace period under the offline caps,
then fails closed (default) or keeps serving under the caps (configured)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from agent import eligibility as el
from agent import topics
from agent.allowlist.freeze import CAPPED, CLOSED, FRESH, GRACE, OFFLINE_CAPS, FreezePolicy
from agent.config import ConfigError, parse_config
from agent.eligibility import decide
from tests.agent.test_config import KEY_HEX, KID
from tests.agent.test_eligibility import ALLOWLIST, EXPIRES, MOTORCYCLE, make_policy

# A policy valid for longer than the list: only the list is stale.
POLICY = make_policy(expires="2026-01-01T00:00:00+00:00", offline_caps_l={"pertalite": 5})


def at(hours_after_expiry: float, freeze: FreezePolicy | None) -> el.Decision:
    now = EXPIRES + dt.timedelta(hours=hours_after_expiry)
    return decide(MOTORCYCLE, "pertalite", ALLOWLIST, POLICY, 0, 20_000, now, freeze)


def test_before_expiry_nothing_changes() -> None:
    soon = dt.datetime(2025, 3, 1, 1, tzinfo=dt.UTC)  # an hour after the list was signed
    fresh = decide(MOTORCYCLE, "pertalite", ALLOWLIST, POLICY, 0, 20_000, soon, FreezePolicy())
    assert fresh.ok and not fresh.offline and fresh.limit_ml == 10_000


def test_default_policy_grace_then_fail_closed() -> None:
    policy = FreezePolicy()
    assert (policy.grace_h, policy.after_grace) == (72.0, "fail_closed")
    in_grace = at(1, policy)
    assert in_grace.ok and in_grace.offline and in_grace.limit_ml == 5_000  # the offline cap
    assert at(71.9, policy).ok
    assert at(72, policy).reason == el.LIST_EXPIRED
    assert at(24 * 30, policy).reason == el.LIST_EXPIRED


def test_configured_offline_caps_keeps_serving_capped() -> None:
    policy = FreezePolicy(grace_h=24, after_grace=OFFLINE_CAPS)
    late = at(24 * 30, policy)
    assert late.ok and late.offline and late.limit_ml == 5_000


def test_without_a_freeze_policy_expiry_refuses_at_once() -> None:
    assert at(0, None).reason == el.LIST_EXPIRED


def test_states() -> None:
    policy = FreezePolicy(grace_h=10)
    assert policy.state(EXPIRES - dt.timedelta(seconds=1), EXPIRES) == FRESH
    assert policy.state(EXPIRES, EXPIRES) == GRACE
    assert policy.state(EXPIRES + dt.timedelta(hours=10), EXPIRES) == CLOSED
    assert FreezePolicy(10, OFFLINE_CAPS).state(EXPIRES + dt.timedelta(hours=10), EXPIRES) == CAPPED


BASE = {"station": {"id": "34.401.01", "zone": "WIB", "data_dir": "data"}, "mqtt": {"port": 1883},
        "trust": {"keys": {KID: KEY_HEX}}, "relay_board": {"port": "/dev/r"},
        "pumps": [{"number": 1, "product": "solar", "channel": 0, "scanner": "/dev/s"}]}


def test_config_reads_freeze_and_root(tmp_path: Path) -> None:
    from tests.allowlist_fixtures import Headquarters

    root = Headquarters(tmp_path / "hq").root_file()
    cfg = parse_config({**BASE, "trust": {"root": str(root)},
                        "freeze": {"grace_h": 12, "after_grace": "offline_caps"}}, tmp_path)
    assert cfg.trust_root == root and cfg.trusted_keys == {}
    assert cfg.freeze == FreezePolicy(12.0, OFFLINE_CAPS)
    from agent.config import render_config

    again = parse_config(__import__("tomllib").loads(render_config(cfg)), tmp_path)
    assert again.trust_root == root and again.freeze == cfg.freeze


@pytest.mark.parametrize(("change", "message"), [
    ({"freeze": {"after_grace": "pray"}}, "after_grace"),
    ({"freeze": {"grace_h": -1}}, "grace_h"),
    ({"trust": {"root": "missing.json"}}, "cannot read root"),
    ({"trust": {"keys": {}}}, "at least one signing key"),
])
def test_config_rejects(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, **change}, tmp_path)


def test_config_rejects_a_root_that_does_not_verify(tmp_path: Path) -> None:
    from tests.allowlist_fixtures import Headquarters

    root = Headquarters(tmp_path / "hq").root_file()
    root.write_text(root.read_text().replace('"version":1', '"version":2'))
    with pytest.raises(ConfigError, match="bad signature"):
        parse_config({**BASE, "trust": {"root": str(root)}}, tmp_path)


def test_frozen_alarm_is_listed_then_cleared_by_a_fresh_list() -> None:
    from agent.live_view import LiveView

    published: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        published.append((topic, payload))
        return True

    live = LiveView("34.401.01", {1: "pertalite"}, publish)
    live.alert({"type": "alert", "alert": "allowlist_frozen", "detail": "allow-list grace"})
    assert "allowlist_frozen" in live.alerts
    live.alert({"type": "alert", "alert": "allowlist_fresh", "detail": "allow-list fresh"})
    assert live.alerts == {}
    alerts = [payload for topic, payload in published if topic == topics.alerts("34.401.01")]
    assert b"allowlist_frozen" in alerts[0] and b"allowlist_frozen" not in alerts[-1]
