"""The station's MQTT connection (paho-mqtt 2.x): presence with a last will, subscriptions to
headquarters' topics, and thread-safe publishing. Everything received is handed to the
agent's event queue; decisions stay on the agent's thread."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.homeassistant import BIRTH_TOPIC

log = logging.getLogger(__name__)

# Nothing the agent is sent is larger: allow-list chunks are 256 KiB, documents at most
# 4 MiB (agent/trust/root.py MAX_METADATA_BYTES); the station broker refuses more as well.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class LinkState:
    connected: bool


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes


class MqttLink:
    def __init__(
        self,
        station: str,
        host: str,
        port: int,
        on_event: Callable[[LinkState | Incoming], None],
        keepalive_s: int = 15,
        max_inflight: int = 0,
        subscribe: tuple[str, ...] = (),
    ) -> None:
        self._extra = subscribe  # station-local topics (the attendants' requests)
        self.station = station
        self.host = host
        self.port = port
        self._on_event = on_event
        self._keepalive_s = keepalive_s
        self.connected = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"spbu-agent-{station}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        # The outbox bounds what is in flight (its window). paho's own limit would only get in
        # the way: its default of 20 throttles, and a large one costs a scan of every message in
        # flight per PUBACK. 0 = no limit of paho's own.
        self.client.max_inflight_messages_set(max_inflight)
        self.client.will_set(topics.state(station), json.dumps({"state": "offline"}), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=15)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive_s)
        self.client.loop_start()

    def close(self, offline_state: dict[str, Any] | None = None) -> None:
        if self.connected and offline_state is not None:
            info = self.client.publish(topics.state(self.station), json.dumps(offline_state),
                                       qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        self.connected = True
        client.subscribe([(topics.ALLOWLIST, 1), (topics.POLICY, 1), (topics.ack(self.station), 1),
                          (topics.command(self.station), 1), (topics.usage(self.station), 1),
                          (topics.USAGE_TICK, 0)])
        client.subscribe(BIRTH_TOPIC, 1)  # re-announce discovery when Home Assistant restarts
        for topic in self._extra:
            client.subscribe(topic, 1)
        self._on_event(LinkState(True))

    def _disconnected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self.connected:
            log.info("broker link lost: %s", reason)
        self.connected = False
        self._on_event(LinkState(False))

    def _message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if len(message.payload) > MAX_MESSAGE_BYTES:  # the broker's limit too (deploy/mosquitto)
            log.warning("message of %d bytes on %s dropped", len(message.payload), message.topic)
            return
        self._on_event(Incoming(message.topic, bytes(message.payload)))
