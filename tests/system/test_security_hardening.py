"""Security hardening (issue 17), one test per finding, each on a real station against a
private mosquitto: the attack as it was reproduced, then what stops it now.

1 future-dated time, 2 clock set forward (also across an offline reboot, with the agent a
real process killed and restarted), 3 forged acknowledgements, 5 token expiry and
revocation, 6 legacy texts, 7 unsigned transactions at headquarters, 8 trusted_keys mode,
9 the smaller items (a list corrupted on disk found after boot, an expired root)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

import agent.clock
import agent.station
from agent import topics
from agent.allowlist.store import AllowListStore
from agent.allowlist.sync import MAX_PENDING_ROOTS
from agent.allowlist.verify import check_current as verify_check_current
from agent.cli.demo import STATION_ID, Customer, DemoStation
from agent.clock import MAX_FLOOR_STEP, ClockGuard
from agent.config import render_config
from agent.docstore import DocumentStore
from agent.journal import Journal
from agent.outbox import OutboxSender
from agent.qr.tokens import issue_token
from agent.trust import root as trust
from agent.trust.acks import sign_ack
from agent.trust.commands import sign_command
from agent.trust.documents import POLICY_KIND
from agent.trust.signing import key_id, public_key_hex
from simulators.broker import MosquittoBroker
from tests.allowlist_fixtures import Headquarters, Station, registry
from tests.conftest import validate
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
UTC = dt.UTC


class Sender:
    """Anyone on the station's broker: publishes what it likes."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-intruder")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def demo(fresh_broker: MosquittoBroker, tmp_path: Path) -> Iterator[DemoStation]:
    station = DemoStation(pumps=2, broker=fresh_broker, workdir=tmp_path / "demo", quiet=True, lang="en")
    manager = Ed25519PrivateKey.generate()
    station.manager = manager  # type: ignore[attr-defined]
    public = manager.public_key()
    station._manager_keys = lambda: {key_id(public): public_key_hex(public)}  # type: ignore[method-assign]
    station.start()
    try:
        yield station
    finally:
        station.close()


def scan(demo: DemoStation, pump: int, text: str) -> dict[str, Any]:
    demo.scanners[pump].scan(text)
    decision = demo.tracker.next(pump, "decision", 5.0)
    assert decision is not None, f"no answer to a scan: {demo.lines[-5:]}"
    return decision


def vehicle(demo: DemoStation, category: str, product_bit: int = 0x01) -> int:
    return next(v.vehicle_id for v in demo.registry
                if v.category == category and v.status == "active" and v.products & product_bit)


def plate(demo: DemoStation, vehicle_id: int) -> str:
    return next(v.plate for v in demo.registry if v.vehicle_id == vehicle_id)


def rejected(demo: DemoStation, events: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in events if e.get("type") == "command_rejected"]


def station_with_a_list(tmp_path: Path) -> tuple[Headquarters, Station, int]:
    """Headquarters, and a station that installed its first list (200 vehicles)."""
    hq = Headquarters(tmp_path / "hq")
    site = Station(tmp_path / "st", hq.root_file())
    version = hq.release(registry(200))
    site.offer(hq.manifest(version), hq.chunks(version))
    return hq, site, version


def test_item1_future_dated_time_does_not_freeze_the_station(demo: DemoStation) -> None:
    station = demo.station
    assert station is not None and demo.hq is not None
    events: list[dict[str, Any]] = []
    station.listeners.append(events.append)
    intruder = Sender(demo.broker)
    year_2099 = dt.datetime(2099, 1, 1, tzinfo=UTC)
    try:
        # A manager's key signs request_state issued in 2099; an unsigned ack says it is 2099.
        intruder.send(topics.command(STATION_ID),
                      sign_command(demo.manager, STATION_ID, "request_state",  # type: ignore[attr-defined]
                                   issued=year_2099, lifetime=dt.timedelta(minutes=5)))
        intruder.send(topics.ack(STATION_ID), json.dumps({"ids": ["x"], "at": year_2099.isoformat()}).encode())
        assert wait_until(lambda: rejected(demo, events) == ["issued_in_future"], 5), events
        assert wait_until(lambda: station.acks_refused == 1, 5)
        assert station.clock.floor < dt.datetime.now(UTC) + dt.timedelta(minutes=1)
        # The station still sells on a valid token, and obeys a fresh command from headquarters.
        car = vehicle(demo, "private_car")
        assert scan(demo, 1, demo.token(car))["ok"]
        intruder.send(topics.command(STATION_ID), sign_command(demo.hq.key, STATION_ID, "lock_pump", {"pump": 2}))
        assert wait_until(lambda: station.locked == {2}, 5), rejected(demo, events)
        # Even headquarters' own signed time far ahead (an insider) moves the floor one bounded step.
        intruder.send(topics.ack(STATION_ID), sign_ack(demo.hq.key, STATION_ID, ["y"], year_2099))
        assert wait_until(lambda: station.clock.floor > dt.datetime.now(UTC) + dt.timedelta(hours=1), 5)
        assert station.clock.floor <= dt.datetime.now(UTC) + MAX_FLOOR_STEP + dt.timedelta(minutes=1)
        assert scan(demo, 2, demo.token(vehicle(demo, "goods_4w", 0x02)))["reason"] == "pump_locked"
    finally:
        intruder.close()


def test_item2_clock_set_forward_gives_no_fresh_quota(demo: DemoStation, monkeypatch: pytest.MonkeyPatch) -> None:
    station = demo.station
    assert station is not None
    bike = vehicle(demo, "motorcycle")  # 10 L of Pertalite a day
    first = demo.serve([Customer("first fill", 1, demo.token(bike), 25_000, "ok")], 30)
    assert [o.as_expected for o in first] == [True]
    demo.wait_delivered(10)  # headquarters' signed acknowledgement: its time anchors the bound
    assert demo.unacked() == 0 and station.clock.anchor is not None
    real = agent.station.utc_now
    for days in (1, 2, 3):  # the attendant sets the clock forward, a day at a time
        monkeypatch.setattr(agent.station, "utc_now", lambda d=days: real() + dt.timedelta(days=d))
        # (each time a QR issued another day, so the scanner does not take it for a double read)
        token = issue_token(bike, plate(demo, bike), dt.date.today() - dt.timedelta(days=days), demo.hq_key)
        decision = scan(demo, 1, token)
        assert not decision["ok"] and decision["reason"] == "quota_exhausted", (days, decision)
    assert not station._read_clock().trusted
    monkeypatch.setattr(agent.station, "utc_now", real)
    assert station._read_clock().trusted
    today = (dt.datetime.now(UTC) + dt.timedelta(hours=7)).date().isoformat()
    assert station.clock.last_trusted_day == today  # the quota day never left today


def test_item3_forged_acknowledgements_do_not_delete_unsent_sales(demo: DemoStation, tmp_path: Path) -> None:
    station = demo.station
    assert station is not None and demo.hq is not None
    demo.hq.client.unsubscribe(topics.TX_ALL)  # headquarters does not get this sale (yet)
    car = vehicle(demo, "private_car")
    assert [o.as_expected for o in demo.serve([Customer("fill", 1, demo.token(car), 5_000, "ok")], 30)] == [True]
    assert wait_until(lambda: demo.unacked() == 1, 5)
    tx_id = json.loads(station.journal.outbox_pending()[0].payload)["tx_id"]
    intruder = Sender(demo.broker)
    try:
        intruder.send(topics.ack(STATION_ID), json.dumps({"ids": [tx_id]}).encode())  # unsigned
        intruder.send(topics.ack(STATION_ID), sign_ack(Ed25519PrivateKey.generate(), STATION_ID, [tx_id]))
        intruder.send(topics.ack(STATION_ID), sign_ack(demo.hq.key, "34.401.02", [tx_id]))  # another station's
        assert wait_until(lambda: station.acks_refused == 3, 5)
        assert demo.unacked() == 1, "a forged acknowledgement deleted a sale headquarters never stored"
        intruder.send(topics.ack(STATION_ID), sign_ack(demo.hq.key, STATION_ID, [tx_id]))
        assert wait_until(lambda: demo.unacked() == 0, 5)
    finally:
        intruder.close()
    # Even headquarters' key removes only what is in flight.
    journal = Journal(tmp_path / "j.sqlite")
    try:
        journal.outbox_put([(f"m{i}", "t", {"i": i}) for i in range(2)])
        sender = OutboxSender(journal, window=1)
        sender.pump(0.0, lambda topic, payload: True)
        assert sender.on_ack(["m1"]) == 0 and journal.outbox_depth() == 2
        assert sender.on_ack(["m0"]) == 1
    finally:
        journal.close()


def publish_policy(demo: DemoStation, **extra: Any) -> None:
    assert demo.hq is not None and demo.station is not None
    demo.hq.policy_extra = extra
    demo.hq.policy_version += 1
    version = demo.hq.policy_version
    demo.hq.client.publish(topics.POLICY, demo.hq.signed_policy_tuf(version), qos=1,
                           retain=True).wait_for_publish(5)
    station = demo.station
    assert wait_until(lambda: station.docs.policy is not None and station.docs.policy.version == version, 5)


def test_item6_legacy_texts_can_be_switched_off_and_never_get_the_unregistered_allowance(
        demo: DemoStation) -> None:
    # Unregistered vehicles get 20 L of Pertalite (a trial area); legacy texts still accepted.
    publish_policy(demo, unregistered_l={"pertalite": 20, "solar": 0})
    invented = [f"OLD-QR-{n:06d}" for n in range(5)]
    answers = [scan(demo, 1, text) for text in invented]
    assert [a["reason"] for a in answers] == ["not_registered"] * 5, answers
    # Headquarters switches legacy texts off: refused with their own reason.
    publish_policy(demo, unregistered_l={"pertalite": 20, "solar": 0}, legacy_qr=False)
    answer = scan(demo, 1, "OLD-QR-999999")
    assert not answer["ok"] and answer["reason"] == "legacy_disabled"
    assert any("old-style QR no longer accepted" in line for line in demo.lines)
    # A signed token is not affected.
    assert scan(demo, 1, demo.token(vehicle(demo, "private_car")))["ok"]


def test_item5_tokens_expire_and_a_reissued_qr_revokes_the_old_one(demo: DemoStation) -> None:
    car = vehicle(demo, "private_car")
    today = dt.date.today()
    ancient = issue_token(car, plate(demo, car), dt.date(2001, 1, 1), demo.hq_key)
    old = issue_token(car, plate(demo, car), today - dt.timedelta(days=3), demo.hq_key)
    new = issue_token(car, plate(demo, car), today, demo.hq_key)
    # Headquarters limits a token's age to 90 days and reissues this car's QR today.
    publish_policy(demo, max_token_age_days=90, token_min_issued={str(car): today.isoformat()})
    answer = scan(demo, 1, ancient)
    assert not answer["ok"] and answer["reason"] == "token_expired", answer
    answer = scan(demo, 1, old)
    assert not answer["ok"] and answer["reason"] == "token_revoked", answer
    assert any("QR was replaced by a newer one" in line for line in demo.lines)
    assert scan(demo, 1, new)["ok"]
    # Another vehicle's three-day-old token is still good: the revocation is per vehicle.
    other = vehicle(demo, "goods_4w", 0x02)
    assert scan(demo, 2, issue_token(other, plate(demo, other), today - dt.timedelta(days=3), demo.hq_key))["ok"]


def test_item8_trusted_keys_mode_refused_under_systemd_unless_allowed(tmp_path: Path) -> None:
    from agent.config import ConfigError
    from agent.trust_mode import check_trust_mode

    demo = DemoStation(pumps=1, workdir=tmp_path / "demo", quiet=True)
    key = Ed25519PrivateKey.generate().public_key()
    demo.hq = object()  # type: ignore[assignment]  # config() only needs it to exist
    demo._root_file = lambda: None  # type: ignore[assignment,method-assign,return-value]
    config = dataclasses.replace(demo.config(), trusted_keys={key_id(key): public_key_hex(key)})
    check_trust_mode(config, {})  # a test or a lab shell: allowed
    with pytest.raises(ConfigError, match="root of trust"):
        check_trust_mode(config, {"INVOCATION_ID": "0123abcd"})  # started by systemd
    check_trust_mode(dataclasses.replace(config, allow_trusted_keys=True), {"INVOCATION_ID": "0123abcd"})
    # The agent itself refuses to start that way, with one clear line.
    toml = tmp_path / "agent.toml"
    toml.write_text(render_config(config))
    result = subprocess.run([sys.executable, "-m", "agent", "agent", "run", "--config", str(toml)],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "INVOCATION_ID": "x"})
    assert result.returncode != 0 and "root of trust" in result.stderr and "Traceback" not in result.stderr


def test_item9_smaller_items_nested_json_big_messages_roots_policy_rotation_corrupt_trust(
        demo: DemoStation, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    station = demo.station
    assert station is not None
    events: list[dict[str, Any]] = []
    station.listeners.append(events.append)
    intruder = Sender(demo.broker)
    try:
        # A deeply nested JSON command gets a rejection report; the loop lives on.
        intruder.send(topics.command(STATION_ID), b"[" * 100_000)
        assert wait_until(lambda: rejected(demo, events) == ["malformed"], 5), events
        # A message over 4 MiB is dropped on arrival, before it is queued or parsed.
        intruder.send(topics.POLICY, b"{" + b" " * (5 * 1024 * 1024) + b"}")
        assert wait_until(lambda: "dropped" in caplog.text, 5)
        assert scan(demo, 1, demo.token(vehicle(demo, "private_car")))["ok"]
        # An installed root past its expiry raises a standing alarm on the dashboard.
        old = station.docs.trust.root
        station.docs.trust.root = dataclasses.replace(old, expires=dt.datetime.now(UTC) - dt.timedelta(days=1))
        assert wait_until(lambda: "root_expired" in station.live.alerts, 10)
        station.docs.trust.root = old
    finally:
        intruder.close()

    hq = Headquarters(tmp_path / "hq")
    # Roots announced far ahead are not buffered without bound.
    far = Station(tmp_path / "far", hq.root_file())
    for version in range(2, 200):
        far.root(version, b"{}")
    assert len(far.sync._roots) <= MAX_PENDING_ROOTS

    # The policy's version floor resets when its keys rotate (a stolen key's 10**9 recovered).
    docs = DocumentStore(tmp_path / "docs", {}, hq.root_file())
    assert docs.offer(POLICY_KIND, signed_policy(hq, 10**9)).accepted
    docs.trust.update_root(hq.rotate("policy"))
    result = docs.offer(POLICY_KIND, signed_policy(hq, 1))
    assert result.accepted, result.detail

    # A corrupt trust.json keeps the rollback floor the installed list had reached.
    site = Station(tmp_path / "site", hq.root_file())
    first, second = hq.release(registry(50)), hq.release(registry(60))
    site.offer(hq.manifest(second), hq.chunks(second))
    assert site.installed() == [second]
    (tmp_path / "site" / "trust.json").write_text("{ not json")
    reopened = DocumentStore(tmp_path / "site", {}, hq.root_file())
    assert reopened.trust.state_error and reopened.trust.floor("allowlist") == second > first


def signed_policy(hq: Headquarters, version: int) -> bytes:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    body = {"_type": POLICY_KIND, "version": version, "created": now.isoformat(),
            "expires": (now + dt.timedelta(days=7)).isoformat(), "limits_l": {"pertalite": {"private_car": 60}},
            "prices_idr_per_l": {"pertalite": 10_000}}
    return trust.sign(body, hq.role_keys["policy"])


def restart(demo: DemoStation, listeners: list[Any]) -> agent.station.Station:
    """The station process stopped and started again on the same data, devices and broker."""
    assert demo.station is not None and demo._thread is not None
    demo._stop.set()
    demo._thread.join(5)
    demo.station.close()
    demo._stop.clear()
    station = agent.station.Station(demo.config(), on_line=demo._line, listeners=[demo.tracker, *listeners])
    station.start()
    demo.station = station
    demo._thread = threading.Thread(target=station.run, args=(demo._stop,), name="agent", daemon=True)
    demo._thread.start()
    assert wait_until(station.pumps_ready, 10)
    return station


def flip_entry_byte(path: Path) -> None:
    """One bit inside the entries section: size, header and signature still pass."""
    data = bytearray(path.read_bytes())
    with AllowListStore(path) as store:
        offset, length = store.header.sections["entries"]
    data[offset + length // 2] ^= 0x08
    path.write_bytes(bytes(data))


def test_item9_store_bin_corrupted_on_disk_is_found_after_boot_not_served_and_fetched_again(
        demo: DemoStation) -> None:
    station = demo.station
    assert station is not None and demo.hq is not None and station.docs.allowlist is not None
    version = station.docs.allowlist.version
    car = vehicle(demo, "private_car")
    current = (demo.workdir / "station" / "allowlist" / "current").resolve()
    manifest = (current / "manifest.json").read_bytes()
    # Headquarters' manifest is off the broker for now: the station cannot fetch the list at once.
    demo.hq.client.publish(topics.ALLOWLIST_MANIFEST, b"", qos=1, retain=True).wait_for_publish(5)
    demo._stop.set()
    assert demo._thread is not None
    demo._thread.join(5)
    flip_entry_byte(current / "store.bin")  # the SD card, or someone with the data directory
    events: list[dict[str, Any]] = []
    station = restart(demo, [events.append])
    assert wait_until(lambda: any(e.get("alert") == "allowlist_corrupt" for e in events), 10), events
    assert "allowlist_corrupt" in station.live.alerts
    validate("event", next(e for e in events if e.get("alert") == "allowlist_corrupt"))
    assert station.docs.allowlist is None and not (current / "store.bin").exists()
    demo.scanners[1].scan(demo.token(car))
    assert wait_until(lambda: any(e.get("type") == "decision" for e in events), 5), (events, demo.lines[-3:])
    answer = next(e for e in events if e.get("type") == "decision")
    assert not answer["ok"] and answer["reason"] == "no_list", answer
    # Headquarters' manifest again: the same version is fetched in full over the broker and serves.
    demo.hq.client.publish(topics.ALLOWLIST_MANIFEST, manifest, qos=1, retain=True).wait_for_publish(5)
    assert wait_until(lambda: station.docs.allowlist is not None, 15), events
    assert station.docs.allowlist is not None and station.docs.allowlist.version == version
    assert wait_until(lambda: "allowlist_corrupt" not in station.live.alerts, 5)
    assert scan(demo, 2, demo.token(vehicle(demo, "goods_4w", 0x02)))["ok"]
    assert verify_check_current(demo.workdir / "station" / "allowlist", station.docs.trust).ok


def test_item9_corrupt_overlay_run_is_caught_by_the_boot_check(tmp_path: Path) -> None:
    hq = Headquarters(tmp_path / "hq")
    site = Station(tmp_path / "st", hq.root_file())
    entries = registry(800)
    v1 = hq.release(entries)
    site.offer(hq.manifest(v1), hq.chunks(v1))
    for day in range(2):  # two daily deltas: installed as runs on the base
        entries = {**entries, **registry(10, seed=100 + day)}
        version = hq.release(entries)
        site.offer(hq.manifest(version), hq.chunks(version))
    current = (tmp_path / "st" / "allowlist" / "current").resolve()
    assert (current / "layers.json").exists() and site.current() == version
    site.sync.boot_check()
    assert [e.kind for e in site.events][-1] == "verified"
    run = sorted(current.glob("run-*.bin"))[-1]
    data = bytearray(run.read_bytes())
    data[-12] ^= 0x10  # one bit of an entry: the run still opens
    run.unlink()  # a hard link shared with the version before: change this one only
    run.write_bytes(bytes(data))
    assert site.current() == version  # what boot checks (signature, sizes, headers) passes
    seen = len(site.events)
    site.sync.boot_check()
    assert [(e.kind, e.version) for e in site.events[seen:]] == [("corrupt", version)]
    assert site.repo.current_version() is None  # nothing served
    site.offer(hq.manifest(version), hq.chunks(version))  # headquarters' retained manifest: fetched in full
    assert site.current() == version and site.installed()[-1] == version
    site.sync.boot_check()
    assert site.events[-1].kind == "verified"


def damage_manifest(path: Path, field: str) -> None:
    """One character changed inside a field of the signed body: the signature fails."""
    data = path.read_bytes()
    at = data.index(f'"{field}":"'.encode()) + len(field) + 5
    flipped = b"0" if data[at:at + 1] != b"0" else b"1"
    path.write_bytes(data[:at] + flipped + data[at + 1:])


def test_item9_damaged_manifest_is_taken_out_and_the_same_version_fetched_again(tmp_path: Path) -> None:
    hq, site, version = station_with_a_list(tmp_path)
    current = (tmp_path / "st" / "allowlist" / "current").resolve()
    damage_manifest(current / "manifest.json", "sha256")  # the snapshot's digest: the content no longer matches
    assert not DocumentStore(tmp_path / "st", {}, hq.root_file()).reload_allowlist().accepted  # boot cannot open it
    site = Station(tmp_path / "st", hq.root_file())  # the agent started again
    site.sync.boot_check()
    assert [(e.kind, e.version) for e in site.events] == [("corrupt", version)]
    assert site.repo.current_version() is None and not current.exists()
    site.offer(hq.manifest(version), hq.chunks(version))  # headquarters' retained manifest, the same version
    assert site.installed() == [version] and site.current() == version
    assert DocumentStore(tmp_path / "st", {}, hq.root_file()).reload_allowlist().accepted


def test_item9_manifest_that_fails_its_signature_alone_is_reinstalled_and_a_rotated_key_is_not_corrupt(
        tmp_path: Path) -> None:
    hq, site, version = station_with_a_list(tmp_path)
    current = (tmp_path / "st" / "allowlist" / "current").resolve()
    damage_manifest(current / "manifest.json", "salt")  # the content still matches its digest
    site = Station(tmp_path / "st", hq.root_file())
    site.sync.boot_check()
    assert site.events == [] and site.repo.current_version() == version  # not called corrupt ...
    site.offer(hq.manifest(version), hq.chunks(version))  # ... but the same version is taken again
    assert site.installed() == [version] and site.current() == version
    # A rotated allowlist key: the installed manifest no longer verifies, its content is intact.
    site.root(2, hq.rotate("allowlist"))
    seen = len(site.events)
    site.sync.boot_check()
    assert [e.kind for e in site.events[seen:]] == [] and (current / "store.bin").exists()


def test_item9_list_corrupt_while_the_root_is_expired_heals_with_exactly_the_content_trusted_before(
        tmp_path: Path) -> None:
    hq, site, version = station_with_a_list(tmp_path)
    newer = hq.release(registry(220))
    current = (tmp_path / "st" / "allowlist" / "current").resolve()
    flip_entry_byte(current / "store.bin")
    site = Station(tmp_path / "st", hq.root_file())
    site.trust.clock = lambda: site.trust.root.expires + dt.timedelta(days=1)  # the next root is late
    site.sync.boot_check()
    assert [(e.kind, e.version) for e in site.events] == [("corrupt", version)]
    site.offer(hq.manifest(newer), hq.chunks(newer))  # nothing new under an expired root
    assert site.rejected() == ["root expired"] and site.installed() == []
    # The same version re-signed with other content: new, refused.
    body = json.loads(hq.manifest(version))["signed"]
    other = trust.sign({**body, "snapshot": json.loads(hq.manifest(newer))["signed"]["snapshot"]},
                       hq.role_keys["allowlist"])
    site.offer(other, hq.chunks(newer))
    assert site.rejected() == ["root expired"] * 2 and site.installed() == []
    # Exactly the content it trusted before: taken again, and served.
    site.offer(hq.manifest(version), hq.chunks(version))
    assert site.installed() == [version] and site.current() == version
    assert not (tmp_path / "st" / "allowlist" / "quarantined.json").exists()


def test_item2_offline_reboot_with_the_clock_set_forward_gives_no_fresh_quota(
        demo: DemoStation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    station = demo.station
    assert station is not None and demo.hq is not None
    bike, car = vehicle(demo, "motorcycle"), vehicle(demo, "private_car")  # 10 L and 60 L a day
    served = demo.serve([Customer("bike", 1, demo.token(bike), 25_000, "ok"),
                         Customer("car", 1, demo.token(car), 20_000, "ok")], 30)
    assert [o.as_expected for o in served] == [True, True]
    demo.wait_delivered(10)
    assert demo.unacked() == 0 and station.clock.anchor is not None
    demo.hq.client.unsubscribe(topics.TX_ALL)  # the link is down: no acknowledgement, no signed time
    # The Pi reboots (a new boot id, monotonic time from zero) with its clock a day ahead.
    boot = tmp_path / "boot_id"
    boot.write_text("another-boot\n")
    monkeypatch.setattr(agent.clock, "BOOT_ID", boot)
    rebooted = __import__("time").monotonic()
    monkeypatch.setattr(agent.clock, "boot_mono", lambda: rebooted)
    real = agent.station.utc_now
    monkeypatch.setattr(agent.station, "utc_now", lambda: real() + dt.timedelta(days=1))
    events: list[dict[str, Any]] = []
    station = restart(demo, [events.append])
    assert station.clock.anchor is None  # headquarters' bound from the last boot is gone
    reading = station._read_clock()
    today = (dt.datetime.now(UTC) + dt.timedelta(hours=7)).date()
    assert reading.trusted and reading.quota_day == (today + dt.timedelta(days=1)).isoformat()
    assert reading.since_day == today.isoformat(), reading  # provisional: today's usage still counts
    assert any(e.get("alert") == "clock_provisional" for e in events)
    yesterday = dt.date.today() - dt.timedelta(days=1)  # another QR text than the one scanned before
    answer = scan(demo, 1, issue_token(bike, plate(demo, bike), yesterday, demo.hq_key))
    assert not answer["ok"] and answer["reason"] == "quota_exhausted", answer
    answer = scan(demo, 1, issue_token(car, plate(demo, car), yesterday, demo.hq_key))
    full = served[1].decision["remaining_ml"] if served[1].decision else 0  # a fresh day's quota
    used_today = station.journal.quota_used(car, "pertalite", today.isoformat())[0]
    assert used_today > 19_000 and answer["ok"] and answer["remaining_ml"] == full - used_today, answer
    station._floor_journaled = -agent.station.FLOOR_EVERY_S  # this close saves the clock's bounds
    demo.board.lift_nozzle(demo.channel_of[1])
    demo.board.hang_nozzle(demo.channel_of[1])
    assert demo.tracker.next(1, "transaction", 10) is not None
    # The close saved no floor from the provisional clock (it may be set forward: after it is
    # put right and the agent restarted, lists and the root would look expired early).
    floor = station.journal.get_meta("wall_floor")
    assert floor is not None and dt.datetime.fromisoformat(floor) < real() + dt.timedelta(minutes=1), floor
    # The manager is told how far the certain time trails the clock.
    station._conditions_mono = 0.0
    assert wait_until(lambda: "clock_lag" in station.live.alerts, 10), station.live.alerts
    # Headquarters' signed time: the clock is ahead of it, the day is today's again, still no fresh quota.
    intruder = Sender(demo.broker)
    try:
        intruder.send(topics.ack(STATION_ID), sign_ack(demo.hq.key, STATION_ID, ["none"], dt.datetime.now(UTC)))
        assert wait_until(lambda: station.clock.anchor is not None, 5)
    finally:
        intruder.close()
    reading = station._read_clock()
    assert not reading.trusted and reading.ahead and reading.quota_day == today.isoformat()
    station._conditions_mono = 0.0  # headquarters' time came: the certain time has caught up
    assert wait_until(lambda: "clock_lag" not in station.live.alerts, 10), station.live.alerts
    answer = scan(demo, 2, demo.token(vehicle(demo, "goods_4w", 0x02)))
    assert answer["ok"], answer  # the station still sells


def test_item2_after_an_offline_reboot_uptime_confirms_the_real_midnight(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What an honest station pays: after a reboot without headquarters' time, yesterday's
    usage counts against today only until the uptime covers the time the power was off."""
    boot = tmp_path / "boot_id"
    boot.write_text("first\n")
    monkeypatch.setattr(agent.clock, "BOOT_ID", boot)
    last_saved = dt.datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 23:30 WIB, the last certain time saved
    guard = ClockGuard("WIB")
    guard.raise_certain(last_saved, 5000.0)
    saved = guard.certain_json(5000.0)
    assert saved is not None
    boot.write_text("second\n")  # power off at 23:40, back at 05:00 WIB; link still down
    monkeypatch.setattr(agent.clock, "boot_mono", lambda: 0.0)
    guard = ClockGuard("WIB")
    guard.restore_certain(saved, 30.0)
    morning = dt.datetime(2026, 12, 1, 22, 0, tzinfo=UTC)  # 05:00 WIB on the 2nd
    first = guard.read(morning, 30.0)
    assert first.trusted and first.quota_day == "2026-12-02" and first.usage_days == ["2026-12-01", "2026-12-02"]
    # 35 minutes of uptime later the certain time has passed midnight: the 2nd is a day of its own.
    later = guard.read(morning + dt.timedelta(minutes=35), 30.0 + 35 * 60)
    assert later.usage_days == ["2026-12-02"] and not later.since_day
    # A clock set 100 days ahead is not believed at all: the certain day stands in.
    far = guard.read(morning + dt.timedelta(days=100), 30.0 + 36 * 60)
    assert not far.trusted and far.quota_day == "2026-12-02"


def test_item9_an_expired_root_brings_nothing_new_but_the_station_keeps_selling(demo: DemoStation) -> None:
    station = demo.station
    assert station is not None and demo.hq is not None and station.docs.allowlist is not None
    events: list[dict[str, Any]] = []
    station.listeners.append(events.append)
    hq = demo.hq
    installed = station.docs.trust.root
    list_version, policy_version = station.docs.allowlist.version, hq.policy_version
    station.outbox.resend_after_s = station.outbox.base_resend_after_s = station.outbox.max_resend_after_s = 1.0
    # The root headquarters provisioned has expired (nobody published the next one in time).
    station.docs.trust.root = dataclasses.replace(installed, expires=dt.datetime.now(UTC) - dt.timedelta(hours=1))
    hq.policy_version += 1
    hq.client.publish(topics.POLICY, hq.signed_policy_tuf(hq.policy_version), qos=1, retain=True).wait_for_publish(5)
    hq.publish_allowlist()
    intruder = Sender(demo.broker)
    try:
        intruder.send(topics.command(STATION_ID), sign_command(hq.key, STATION_ID, "lock_pump", {"pump": 2}))
        # (the manager's own key does not hang on the root: the dashboard still works)
        intruder.send(topics.command(STATION_ID),
                      sign_command(demo.manager, STATION_ID, "request_state"))  # type: ignore[attr-defined]
        assert wait_until(lambda: rejected(demo, events) == ["root_expired"], 5), events
        validate("event", next(e for e in events if e.get("type") == "command_rejected"))
        assert wait_until(lambda: any(e.get("type") == "command" and e["command"] == "request_state"
                                      for e in events), 5)
        assert wait_until(lambda: {"policy_rejected", "allowlist_rejected"} <= {
            e["alert"] for e in events if e.get("type") == "alert"}, 10), events
        alerts = {e["alert"]: e for e in events if e.get("type") == "alert"}
        assert "root expired" in alerts["policy_rejected"]["detail"]
        assert alerts["allowlist_rejected"]["check"] == "root expired"
        assert station.locked == set() and station.docs.policy is not None
        assert (station.docs.policy.version, station.docs.allowlist.version) == (policy_version, list_version)
        station._conditions_mono = 0.0  # the standing alarms are looked at in the next loop pass
        assert wait_until(lambda: "root_expired" in station.live.alerts, 10)
        # A sale still goes through on what was installed; headquarters' acknowledgement of it is not taken.
        car = vehicle(demo, "private_car")
        assert [o.as_expected for o in demo.serve([Customer("fill", 1, demo.token(car), 5_000, "ok")], 30)] == [True]
        assert wait_until(lambda: station.acks_refused >= 1, 10) and demo.unacked() == 1
        # Headquarters publishes root v2: accepted under the expired one, and everything new flows again.
        public = hq.key.public_key()
        far = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(days=365)
        root_v2 = trust.sign(trust.root_body(2, far, {role: [public] for role in trust.ALL_ROLES}, {}), [hq.key])
        hq.client.publish(topics.root(2), root_v2, qos=1, retain=True).wait_for_publish(5)
        assert wait_until(lambda: station.docs.trust.root.version == 2, 10)
        hq.publish_documents()
        assert wait_until(lambda: station.docs.policy is not None and station.docs.policy.version > policy_version
                          and station.docs.allowlist is not None and station.docs.allowlist.version > list_version, 15)
        intruder.send(topics.command(STATION_ID), sign_command(hq.key, STATION_ID, "lock_pump", {"pump": 2}))
        assert wait_until(lambda: station.locked == {2}, 5)
        assert wait_until(lambda: demo.unacked() == 0, 10)  # resent and acknowledged under the new root
    finally:
        intruder.close()


# The agent as a real process whose module-level clock hooks are moved, as a reboot with the
# wall clock set forward would move them: a new boot id, monotonic time from now, +1 day.
REBOOTED_AGENT = """
import datetime as dt, sys, time
from pathlib import Path
import agent.clock, agent.station
agent.clock.BOOT_ID = Path(sys.argv[1])
booted = time.monotonic()
agent.clock.boot_mono = lambda: booted
real = agent.station.utc_now
agent.station.utc_now = lambda: real() + dt.timedelta(days=1)
from agent.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_item2_agent_process_killed_and_restarted_offline_with_the_clock_a_day_ahead(
        fresh_broker: MosquittoBroker, tmp_path: Path) -> None:
    import signal

    from agent.config import PumpConfig, StationConfig
    from simulators.hq import HeadquartersSim, synthetic_registry
    from simulators.relay_board import RelayBoardSim
    from simulators.scanner import ScannerSim

    registry_ = synthetic_registry(300)
    bike = next(e for e in registry_ if e.category == "motorcycle" and e.products & 0x01 and e.status == "active")
    hq = HeadquartersSim(fresh_broker.host, fresh_broker.port, registry_)
    hq.start()
    hq.publish_documents()
    board, scanner = RelayBoardSim(channels=1, flow_lps=25.0), ScannerSim()
    board.start()
    events: list[dict[str, Any]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-event-watcher")
    watcher.on_message = lambda c, u, m: events.append(json.loads(m.payload))
    watcher.connect(fresh_broker.host, fresh_broker.port)
    watcher.subscribe([(topics.event("12.345.67"), 1), (topics.state("12.345.67"), 1)])
    watcher.loop_start()
    config = StationConfig(
        station_id="12.345.67", zone="WIB", data_dir=tmp_path / "data", broker_host=fresh_broker.host,
        broker_port=fresh_broker.port, trusted_keys={hq.key_id: hq.public_key_hex},
        relay_board_port=board.path, pumps=(PumpConfig(1, "pertalite", 0, scanner.path),))
    (tmp_path / "station.toml").write_text(render_config(config))
    command = ["-v", "agent", "run", "--config", str(tmp_path / "station.toml")]
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115 (both processes append to it)

    def decisions() -> list[dict[str, Any]]:
        return [e for e in events if e.get("type") == "decision"]

    def scan_bike(issued: dt.date, count: int) -> dict[str, Any]:
        scanner.scan(issue_token(bike.vehicle_id, bike.plate, issued, hq.key))
        assert wait_until(lambda: len(decisions()) >= count, 20), (tmp_path / "agent.log").read_text()[-3000:]
        return decisions()[count - 1]

    agent_process = subprocess.Popen([sys.executable, "-m", "agent", *command], stdout=log, stderr=log)
    try:
        assert wait_until(lambda: any(e.get("type") == "document" and e.get("kind") == "policy" for e in events),
                          20), (tmp_path / "agent.log").read_text()[-3000:]
        assert wait_until(lambda: any(e.get("state") == "online" and e.get("pumps") for e in events), 10)
        time.sleep(0.5)
        assert scan_bike(dt.date.today(), 1)["ok"]  # 10 L of Pertalite a day: all of it now
        assert wait_until(lambda: board.relay_closed(0), 5)
        board.lift_nozzle(0)
        assert wait_until(lambda: not board.relay_closed(0), 10)  # the board stops at the preset
        board.hang_nozzle(0)
        assert wait_until(lambda: len(hq.transactions()) == 1, 10)  # and headquarters' signed ack
        time.sleep(1.0)
        agent_process.send_signal(signal.SIGKILL)  # power cut
        agent_process.wait(5)
        hq.client.unsubscribe(topics.TX_ALL)  # the link stays down: nothing signed arrives
        boot = tmp_path / "boot_id"
        boot.write_text("a-later-boot\n")
        agent_process = subprocess.Popen([sys.executable, "-c", REBOOTED_AGENT, str(boot), *command],
                                         stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[2])
        assert wait_until(lambda: sum(e.get("state") == "online" for e in events) >= 2, 20), (
            (tmp_path / "agent.log").read_text()[-3000:])
        time.sleep(0.5)
        answer = scan_bike(dt.date.today() - dt.timedelta(days=1), 2)  # another QR text: not a double read
        assert not answer["ok"] and answer["reason"] == "quota_exhausted", answer
    finally:
        if agent_process.poll() is None:
            agent_process.send_signal(signal.SIGKILL)
            agent_process.wait(5)
        log.close()
        watcher.loop_stop()
        watcher.disconnect()
        hq.close()
        board.close()
        scanner.close()
