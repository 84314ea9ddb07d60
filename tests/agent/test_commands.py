"""Signed commands end to end on the real broker: headquarters' Ed25519 key signs, the station
verifies, acts, publishes the result; unsigned, tampered, foreign-key, replayed, expired and
wrong-station commands are refused and reported as events. Nonces and locks survive a
restart of the agent."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.cli.demo import STATION_ID, DemoStation
from agent.station import Station
from agent.trust.commands import (
    CommandGate,
    CommandRejected,
    CommandStore,
    keyring_from_config,
    parse_command,
    sign_command,
)
from simulators.broker import MosquittoBroker
from tests.conftest import validate
from tests.helpers import MqttRecorder, wait_until


class Watcher(MqttRecorder):
    """Everything the station publishes, and a way to send it commands."""

    def __init__(self, broker: MosquittoBroker) -> None:
        super().__init__(broker, ["spbu/v1/#"], "test-commands")

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received(lambda t: t == topic)]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.on(topics.event(STATION_ID)) if e["type"] == kind]

    def send(self, data: bytes, station: str = STATION_ID) -> None:
        self.client.publish(topics.command(station), data, qos=1).wait_for_publish(5)


def rejected_reasons(watcher: Watcher) -> list[str]:
    return [e["reason"] for e in watcher.events("command_rejected")]


@pytest.mark.integration
def test_signed_commands_against_the_real_broker(fresh_broker: MosquittoBroker, tmp_path: Path) -> None:
    # A broker of its own: the retained state and discovery this station leaves behind
    # (a locked pump) must not reach other tests' stations with the same id.
    demo = DemoStation(pumps=2, broker=fresh_broker, workdir=tmp_path / "demo", quiet=True, lang="en")
    watcher = Watcher(fresh_broker)
    try:
        demo.start()
        assert demo.hq is not None and demo.station is not None
        key = demo.hq.key
        results = topics.command_result(STATION_ID)

        lock = sign_command(key, STATION_ID, "lock_pump", {"pump": 1})
        watcher.send(lock)
        assert wait_until(lambda: len(watcher.on(results)) == 1, 5)
        result = watcher.on(results)[0]
        validate("command-result", result)
        assert result["ok"] and result["command"] == "lock_pump"
        assert wait_until(lambda: watcher.on(topics.state(STATION_ID))[-1]["pumps"]["1"] == "locked", 5)

        # A locked pump refuses scans with its own attendant line; the other pump still sells.
        vehicle = next(v for v in demo.registry if v.status == "active")
        demo.scanners[1].scan(f"SPBU1:{vehicle.vehicle_id}")
        assert wait_until(lambda: any(e["reason"] == "pump_locked" for e in watcher.events("decision")), 5)
        assert any("pump 1  pump locked by remote command" in line for line in demo.lines)

        # Refused: replayed, unsigned, tampered, a key outside the keyring, expired, another station's.
        watcher.send(lock)
        body = json.loads(base64.b64decode(json.loads(lock)["payload"]))
        watcher.send(json.dumps({"kind": "command", "payload": json.loads(lock)["payload"]}).encode())
        tampered = json.loads(lock)
        tampered["payload"] = base64.b64encode(json.dumps({**body, "args": {"pump": 2}}).encode()).decode()
        watcher.send(json.dumps(tampered).encode())
        watcher.send(sign_command(Ed25519PrivateKey.generate(), STATION_ID, "unlock_pump", {"pump": 1}))
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        watcher.send(sign_command(key, STATION_ID, "unlock_pump", {"pump": 1}, issued=past))
        watcher.send(sign_command(key, "34.401.02", "unlock_pump", {"pump": 1}))
        expected = ["replayed", "unsigned", "bad_signature", "unknown_key", "expired", "wrong_station"]
        assert wait_until(lambda: rejected_reasons(watcher) == expected, 5), rejected_reasons(watcher)
        assert len(watcher.on(results)) == 1  # none of them did anything
        assert demo.station.locked == {1}

        # request_state: a heartbeat at once, valid against its schema.
        beats = len(watcher.on(topics.heartbeat(STATION_ID)))
        watcher.send(sign_command(key, STATION_ID, "request_state"))
        assert wait_until(lambda: len(watcher.on(topics.heartbeat(STATION_ID))) > beats, 5)
        beat = watcher.on(topics.heartbeat(STATION_ID))[-1]
        validate("heartbeat", beat)
        assert beat["pumps"]["1"] == "locked" and beat["locked_pumps"] == [1]
        assert beat["allowlist"]["version"] == demo.hq.allowlist_version and beat["clock"]["trusted"]

        watcher.send(sign_command(key, STATION_ID, "rotate_logs"))
        watcher.send(sign_command(key, STATION_ID, "reload_config"))
        watcher.send(sign_command(key, STATION_ID, "ack_alert", {"alert_id": "no-such-alert"}))
        assert wait_until(lambda: len(watcher.on(results)) == 5, 5)
        assert [r["ok"] for r in watcher.on(results)] == [True, True, True, True, False]
        assert watcher.on(results)[-1]["detail"] == "no active alert no-such-alert"
        for topic, message in watcher.received():
            if topic.endswith("/event"):
                validate("event", message)
            elif topic.endswith("/state"):
                validate("state", message)
            elif topic.endswith("/cmd_result"):
                validate("command-result", message)
    finally:
        watcher.close()
        demo.close()

    # The agent restarts: the lock holds and the old command is still a replay.
    config = demo.config()
    seen: list[dict[str, Any]] = []
    station = Station(config, on_line=lambda text: None, listeners=[seen.append])
    try:
        assert station.locked == {1}
        station._command(lock)
        assert [e["reason"] for e in seen if e["type"] == "command_rejected"] == ["replayed"]
    finally:  # never started: only its files are open
        station.command_store.close()
        station.journal.close()


def test_gate_refuses_a_replay_after_the_store_is_reopened(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    from agent.trust.signing import key_id, public_key_hex

    keyring = keyring_from_config({key_id(key.public_key()): public_key_hex(key.public_key())})
    now = dt.datetime.now(dt.UTC)
    data = sign_command(key, STATION_ID, "lock_pump", {"pump": 3})
    store = CommandStore(tmp_path / "commands.sqlite")
    assert CommandGate(STATION_ID, keyring, store).admit(data, now).pump == 3
    store.close()
    store = CommandStore(tmp_path / "commands.sqlite")
    try:
        with pytest.raises(CommandRejected) as refused:
            CommandGate(STATION_ID, keyring, store).admit(data, now)
        assert refused.value.reason == "replayed"
        # A long-lived command is refused before its nonce is spent.
        long = sign_command(key, STATION_ID, "request_state", lifetime=dt.timedelta(days=2))
        with pytest.raises(CommandRejected, match="lifetime_too_long"):
            CommandGate(STATION_ID, keyring, store).admit(long, now)
    finally:
        store.close()


@pytest.mark.parametrize("body_change, reason", [
    ({"command": "open_valve"}, "malformed"),
    ({"nonce": "short"}, "malformed"),
    ({"args": {}}, "malformed"),  # lock_pump without a pump
    ({"issued": "yesterday"}, "malformed"),
    ({"command": "ack_alert", "args": {"alert_id": 7}}, "malformed"),
])
def test_malformed_signed_commands_are_refused(body_change: dict[str, Any], reason: str) -> None:
    from agent.trust.signing import key_id, public_key_hex, sign_document

    key = Ed25519PrivateKey.generate()
    keyring = keyring_from_config({key_id(key.public_key()): public_key_hex(key.public_key())})
    body = {"command": "lock_pump", "station": STATION_ID, "nonce": "ab" * 16, "issued": "2026-11-20T08:00:00+00:00",
            "expires": "2026-11-20T08:05:00+00:00", "args": {"pump": 1}, **body_change}
    with pytest.raises(CommandRejected) as refused:
        parse_command(sign_document("command", body, key), keyring)
    assert refused.value.reason == reason
    if "issued" not in body_change:  # (date-time formats are checked only with rfc3339-validator)
        with pytest.raises(jsonschema.ValidationError):  # the published schema refuses them too
            validate("command", body)
