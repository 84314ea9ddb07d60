"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.broker import MosquittoBroker


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, step_s: float = 0.01) -> bool:
    """Poll a condition until it holds or the time is up; bounded, never a busy loop."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def wait_for(events: queue.Queue[Any], match: Callable[[Any], bool], timeout_s: float = 5.0) -> Any:
    """The first queued event that matches, skipping others; AssertionError if none comes."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            break
        if match(event):
            return event
    raise AssertionError("expected event did not arrive")


class MqttRecorder:
    """A plain MQTT client on the test's broker that keeps everything arriving on its
    subscriptions, in order, as (topic, payload)."""

    def __init__(self, broker: MosquittoBroker, subscriptions: list[str], client_id: str,
                 max_inflight: int | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)

        def connected(client: mqtt.Client, *args: Any) -> None:
            if subscriptions:
                client.subscribe([(topic, 1) for topic in subscriptions])
            ready.set()

        self.client.on_connect = connected
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(5), "the test's MQTT client did not connect"

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def received(self, match: Callable[[str], bool] = lambda topic: True) -> list[tuple[str, dict[str, Any]]]:
        """The messages so far on topics that `match`, their JSON payloads decoded (other
        topics may carry binary data, such as allow-list chunks)."""
        with self._lock:
            return [(topic, json.loads(payload)) for topic, payload in self.messages if match(topic)]

    def raw(self, match: Callable[[str], bool] = lambda topic: True) -> list[tuple[str, bytes]]:
        """The messages so far on topics that `match`, payloads as they came."""
        with self._lock:
            return [(topic, payload) for topic, payload in self.messages if match(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
