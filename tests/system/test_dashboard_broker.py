"""The dashboard's side of the station broker, on real mosquitto: what the dashboard user may
read and publish, and Home Assistant discovery as the agent publishes it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli.demo import DemoStation
from simulators.broker import DashboardListener, MosquittoBroker
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

STATION = "34.401.01"
SLUG = "spbu_34_401_01"


class Client:
    def __init__(self, broker: MosquittoBroker, websockets: bool = False, user: str | None = None,
                 password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.refused: Any = None
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311,
                                  transport="websockets" if websockets else "tcp")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        port = broker.dashboard.port if websockets and broker.dashboard else broker.port
        self.client.connect_async(broker.host, port)
        self.client.loop_start()

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = reason
        else:
            self.connected.set()

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def subscribe(self, topic: str) -> None:
        got = threading.Event()
        self.client.on_subscribe = lambda *args: got.set()
        self.client.subscribe(topic, 1)
        assert got.wait(5)

    def topics(self, containing: str = "") -> list[str]:
        with self.lock:
            return [t for t, _, _ in self.messages if containing in t]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def dashboard_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<!doctype html><title>t</title>")
    broker = MosquittoBroker(workdir=tmp_path / "broker",
                             dashboard=DashboardListener(www, STATION, {"manager": "s3cret-pass-word"}))
    broker.workdir.mkdir()
    broker.start()
    yield broker
    broker.close()


def test_dashboard_user_reads_its_station_and_publishes_only_commands(dashboard_broker: MosquittoBroker) -> None:
    agent = Client(dashboard_broker)  # the agent's loopback listener
    dash = Client(dashboard_broker, websockets=True, user="manager", password="s3cret-pass-word")
    try:
        assert agent.connected.wait(5) and dash.connected.wait(5)
        agent.subscribe("spbu/#")
        agent.subscribe("hq/#")
        dash.subscribe("spbu/#")  # granted, but the ACL filters what it may read
        agent.client.publish(f"spbu/v1/{STATION}/state", b'{"state":"online"}', qos=1)
        agent.client.publish("spbu/v1/99.999.99/tx", b'{"other":"station"}', qos=1)
        dash.client.publish(f"spbu/v1/{STATION}/tx", b'{"forged":"tx"}', qos=1)
        dash.client.publish(f"hq/v1/cmd/{STATION}", b'{"signed":"command"}', qos=1)
        dash.client.publish("hq/v1/allowlist", b'{"forged":"list"}', qos=1)
        assert wait_until(lambda: f"hq/v1/cmd/{STATION}" in agent.topics(), 5)
        time.sleep(0.5)  # let anything wrongly delivered arrive
        assert f"spbu/v1/{STATION}/state" in dash.topics()
        assert "spbu/v1/99.999.99/tx" not in dash.topics(), "read another station's transactions"
        assert f"spbu/v1/{STATION}/tx" not in agent.topics(), "the dashboard published a transaction"
        assert "hq/v1/allowlist" not in agent.topics(), "the dashboard published an allow-list"
    finally:
        agent.close()
        dash.close()


def test_wrong_password_and_anonymous_are_refused_on_the_dashboard_listener(
        dashboard_broker: MosquittoBroker) -> None:
    for user, password in (("manager", "wrong"), (None, None)):
        dash = Client(dashboard_broker, websockets=True, user=user, password=password)
        try:
            def refused(d: Client = dash) -> bool:
                return d.refused is not None

            assert wait_until(refused, 5), f"{user!r} was let in"
            assert not dash.connected.is_set()
        finally:
            dash.close()


def test_home_assistant_discovery_is_resent_on_its_birth_and_removed_pumps_deleted(
        mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    watcher = Client(mosquitto)
    demo = DemoStation(pumps=2, broker=mosquitto, workdir=workdir, quiet=True)
    try:
        assert watcher.connected.wait(5)
        # The session's broker holds other tests' stations too: only this one counts.
        watcher.subscribe(f"homeassistant/+/{SLUG}/#")
        demo.start()
        assert wait_until(lambda: any("pump_2_state" in t for t in watcher.topics()), 20)
        pump1 = next(p for t, p, _ in watcher.messages if t.endswith("pump_1_state/config"))
        assert json.loads(pump1)["state_topic"] == f"spbu/v1/{STATION}/pump/1"
        configs = len(set(watcher.topics()))
        time.sleep(0.5)  # the start-up announcement (and any retained copies) has arrived
        before = len(watcher.topics())
        watcher.client.publish("homeassistant/status", b"online", qos=1)  # Home Assistant restarted
        assert wait_until(lambda: len(watcher.topics()) >= before + configs, 20)
    finally:
        demo.close()
    smaller = DemoStation(pumps=1, broker=mosquitto, workdir=workdir, quiet=True)
    try:
        smaller.start()
        assert wait_until(lambda: any(t.endswith("pump_2_state/config") and p == b""
                                      for t, p, _ in watcher.messages), 5), "pump 2 was not removed"
    finally:
        smaller.close()
        watcher.close()
    fresh = Client(mosquitto)  # what a Home Assistant starting now would find
    try:
        assert fresh.connected.wait(5)
        fresh.subscribe(f"homeassistant/+/{SLUG}/#")
        assert wait_until(lambda: any("pump_1_state" in t for t in fresh.topics()), 5)
        assert not any("pump_2_" in t for t in fresh.topics())
    finally:
        fresh.close()
