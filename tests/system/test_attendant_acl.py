"""The attendants' devices on real mosquitto (TLS WebSockets, one user per device, the ACL of
agent/attendant/acl.py) in front of the real agent: a device cannot act on, or read, another
island's pumps; a wrong PIN is refused and then rate-limited.

MQTT 5 clients, so a refused publish comes back as PUBACK reason code 135 (not authorised);
non-delivery is proven with a sentinel published after the refused message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.attendant import topics
from agent.attendant.acl import render_acl
from agent.attendant.files import AttendantPageMissing, attendant_dir
from agent.cli.demo import UNREGISTERED_ID, DemoStation
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
NOT_AUTHORISED = 135
ST = "34.401.01"

try:
    attendant_dir()
except AttendantPageMissing as exc:  # the broker serves the page; without it there is no listener to test
    pytest.skip(str(exc), allow_module_level=True)


class Device:
    """A phone: MQTT 5 over TLS WebSockets with its own name and key."""

    def __init__(self, demo: DemoStation, name: str, key: str | None = None) -> None:
        assert demo.attendant is not None
        self.name = name
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.codes: dict[int, int] = {}
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.refused: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}-{id(self)}",
                                  protocol=mqtt.MQTTv5, transport="websockets")
        self.client.tls_set(ca_certs=str(demo.attendant.ca_cert))
        self.client.username_pw_set(name, key if key is not None else demo.attendant.device_key(name))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", demo.attendant.listener.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = int(reason.value)
        else:
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, json.loads(msg.payload) if msg.payload else {}))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            self.codes[mid] = int(reason.value)

    def ready(self) -> Device:
        assert self.connected.wait(10), f"not connected (refused: {self.refused})"
        return self

    def subscribe(self, *filters: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(5)

    def publish(self, topic: str, body: dict[str, Any]) -> int:
        info = self.client.publish(topic, json.dumps(body), qos=1)
        assert wait_until(lambda: info.mid in self.codes, 5), f"no PUBACK for {topic}"
        return self.codes[info.mid]

    def replies(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for t, b in self.received if t == topics.reply(ST, self.name) and b.get("type") == kind]

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _ in self.received}

    def ask(self, body: dict[str, Any], kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
        before = len(self.replies(kind))
        assert self.publish(topics.shift_in(ST, self.name), body) == 0
        assert wait_until(lambda: len(self.replies(kind)) > before, timeout_s), f"no {kind} reply"
        return self.replies(kind)[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStation]:
    station = DemoStation(pumps=4, attendant=True, quiet=True, workdir=tmp_path_factory.mktemp("acl"))
    station.start()
    yield station
    station.close()


@pytest.fixture
def island1(demo: DemoStation) -> Iterator[Device]:
    device = Device(demo, "pulau-1").ready()
    device.subscribe(topics.reply(ST, "pulau-1"))
    yield device
    device.close()


def test_the_acl_names_each_devices_pumps() -> None:
    acl = render_acl(ST, {"pulau-1": (1, 2), "pulau-2": (3, 4)})
    assert "pattern write att/v1/34.401.01/in/%u/shift" in acl
    block = acl.split("user pulau-1\n")[1].split("\n\n")[0]
    assert "topic write att/v1/34.401.01/in/pulau-1/2/+" in block and "/3/" not in block
    with pytest.raises(ValueError):
        render_acl(ST, {"pulau-1/#": (1,)})  # a name that would widen a topic filter


def test_a_wrong_device_key_is_refused_by_the_broker(demo: DemoStation) -> None:
    device = Device(demo, "pulau-1", key="not-the-key")
    try:
        assert wait_until(lambda: device.refused is not None, 10), "a wrong key connected"
        assert not device.connected.is_set()
    finally:
        device.close()


def test_a_device_cannot_scan_for_another_islands_pumps(demo: DemoStation, island1: Device) -> None:
    assert demo.attendant is not None
    assert island1.ask({"type": "signin", "attendant": demo.attendant.number, "pin": demo.attendant.pin},
                       "signin")["ok"]
    qr = demo.token(UNREGISTERED_ID + 900)
    # Another island's pump, under its own name or under the other device's name: refused by the broker.
    assert island1.publish(topics.pump_in(ST, "pulau-1", 3, "scan"), {"text": qr}) == NOT_AUTHORISED
    assert island1.publish(topics.pump_in(ST, "pulau-2", 3, "scan"), {"text": qr}) == NOT_AUTHORISED
    assert island1.publish(topics.shift_in(ST, "pulau-2"), {"type": "close"}) == NOT_AUTHORISED
    assert demo.tracker.next(3, "decision", 1.0) is None  # nothing reached the agent
    # Its own pump: allowed, and it is the agent's ordinary decision.
    assert island1.publish(topics.pump_in(ST, "pulau-1", 1, "scan"), {"text": qr}) == 0
    decision = demo.tracker.next(1, "decision", 5.0)
    assert decision is not None and decision["reason"] == "not_registered"


def test_the_agent_refuses_another_islands_pump_even_if_the_acl_let_it_through(demo: DemoStation,
                                                                             island1: Device) -> None:
    assert demo.station is not None
    # Written on the agent's own (unrestricted) listener, as a mis-configured ACL would let it.
    demo.station.link.publish(topics.pump_in(ST, "pulau-1", 4, "stop"), b"{}", 1, False)
    assert wait_until(lambda: any(r.get("reason") == "not_your_pump" for r in island1.replies("stop")), 5)


def test_a_device_cannot_read_another_islands_pumps_or_replies(demo: DemoStation, island1: Device) -> None:
    island1.subscribe(topics.pump_view(ST, 1), topics.pump_view(ST, 3), topics.reply(ST, "pulau-2"), "att/v1/#")
    other = Device(demo, "pulau-2").ready()
    try:
        other.subscribe(topics.reply(ST, "pulau-2"))
        other.ask({"type": "hello"}, "hello")  # a reply to pulau-2 exists now
        demo.scanners[3].scan(demo.token(UNREGISTERED_ID + 901))  # pump 3's view changes
        assert demo.tracker.next(3, "decision", 5.0) is not None
        demo.scanners[1].scan(demo.token(UNREGISTERED_ID + 902))  # the sentinel, on its own pump
        assert wait_until(lambda: topics.pump_view(ST, 1) in island1.topics(), 5)
        seen = island1.topics()
        assert topics.pump_view(ST, 3) not in seen and topics.pump_view(ST, 4) not in seen
        assert topics.reply(ST, "pulau-2") not in seen
    finally:
        other.close()


def test_a_wrong_pin_is_refused_then_rate_limited(demo: DemoStation) -> None:
    assert demo.attendant is not None
    device = Device(demo, "pulau-2").ready()
    try:
        device.subscribe(topics.reply(ST, "pulau-2"))
        wrong = "000000" if demo.attendant.pin != "000000" else "111111"
        first = device.ask({"type": "signin", "attendant": demo.attendant.number, "pin": wrong}, "signin")
        assert first["ok"] is False and first["reason"] == "wrong_pin"
        for _ in range(2):
            last = device.ask({"type": "signin", "attendant": demo.attendant.number, "pin": wrong}, "signin")
        assert last["reason"] == "rate_limited" and last["retry_after_s"] > 0
        # Now even the right PIN waits: guessing costs time, not just tries.
        right = device.ask({"type": "signin", "attendant": demo.attendant.number, "pin": demo.attendant.pin},
                           "signin")
        assert right["ok"] is False and right["reason"] == "rate_limited"
        refused = device.ask({"type": "hello"}, "hello")
        assert refused["shift"] is None  # still nobody signed in on this device
        scan = device.publish(topics.pump_in(ST, "pulau-2", 3, "scan"), {"text": demo.token(UNREGISTERED_ID + 903)})
        assert scan == 0 and demo.tracker.next(3, "decision", 1.0) is None  # no shift: the agent ignores it
        assert any(r.get("reason") == "not_signed_in" for r in device.replies("scan"))
    finally:
        device.close()
