"""Provisioning the attendants' app the way a station is set up: `spbu keys` for the station's
TLS certificate, `spbu keys broker-config --attendant-cert/--attendant-key`, `spbu attendant
device` and `spbu attendant pin`; then the rendered configuration on real mosquitto."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.attendant import topics
from agent.attendant.config import parse_attendant, verify_pin
from agent.cli.main import main
from agent.page_server import PageServer
from hq import pki
from simulators.broker import MosquittoBroker, free_port
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
A = "34.401.01"
NOT_AUTHORISED = 135
NO_SUBSCRIBERS = 16  # accepted; nobody is listening


class Client:
    def __init__(self, port: int, ws_tls: Path | None = None, login: tuple[str, str] | None = None) -> None:
        self.codes: dict[int, int] = {}
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.refused: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  transport="websockets" if ws_tls else "tcp")
        if ws_tls is not None:
            self.client.tls_set(ca_certs=str(ws_tls))
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, reason, p: self.codes.__setitem__(mid, int(reason.value))
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = int(reason.value)
        else:
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def ready(self) -> Client:
        assert self.connected.wait(10), f"refused {self.refused}"
        return self

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        assert wait_until(lambda: info.mid in self.codes, 5), f"no PUBACK for {topic}"
        return self.codes[info.mid]

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, 1)
        assert done.wait(5)

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_provisioned_station_broker_serves_the_page_and_enforces_device_pumps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, tls, etc = tmp_path / "ca", tmp_path / "tls", tmp_path / "etc"
    assert main(["keys", "ca", "--out", str(ca)]) == 0
    assert main(["keys", "station-cert", "--ca", str(ca), "--station", A, "--out", str(tls)]) == 0
    assert main(["keys", "server-cert", "--ca", str(ca), "--host", "127.0.0.1", "--out", str(tls)]) == 0
    assert main(["keys", "broker-config", "--station", A, "--hq-host", "localhost", "--hq-port", str(free_port()),
                 "--ca", str(ca / "ca.crt"), "--cert", str(tls / f"{A}.crt"), "--key", str(tls / f"{A}.key"),
                 "--ws-interface", "lo", "--ws-port", str(free_port()), "--out", str(etc),
                 "--ws-cert", str(tls / "127.0.0.1.crt"), "--ws-key", str(tls / "127.0.0.1.key"),
                 "--attendant-cert", str(tls / "127.0.0.1.crt"), "--attendant-key", str(tls / "127.0.0.1.key")]) == 0
    capsys.readouterr()
    assert main(["attendant", "device", "--station", A, "--name", "pulau-1", "--pumps", "1,2", "--etc", str(etc),
                 "--host", "127.0.0.1"]) == 0
    printed = capsys.readouterr().out
    key = printed.split("&key=")[1].strip()
    assert "pulau-1 = [1, 2]" in printed
    assert main(["attendant", "device", "--station", A, "--name", "Pulau 2", "--pumps", "3", "--etc", str(etc),
                 "--host", "127.0.0.1"]) == 2  # a bad name: one clear error, nothing written
    assert "pulau 2" not in (etc / "station-attendant.acl").read_text().lower()

    conf = (etc / "spbu.conf").read_text()
    assert conf.index("listener 9443 lo") < conf.index("connection hq")  # not inside the bridge's settings
    att_port, agent_port = free_port(), free_port()
    conf = (conf.replace("listener 9443 lo", f"listener {att_port} 127.0.0.1")
            .replace("listener 1883 127.0.0.1", f"listener {agent_port} 127.0.0.1"))
    (tmp_path / "broker").mkdir()
    broker = MosquittoBroker(port=agent_port, workdir=tmp_path / "broker", config=conf)
    broker.start()
    agent = Client(agent_port, login=("spbu-agent", (etc / "agent.password").read_text().strip())).ready()
    phone = Client(att_port, ws_tls=ca / "ca.crt", login=("pulau-1", key)).ready()
    try:
        agent.subscribe(topics.requests(A))
        assert phone.publish(topics.pump_in(A, "pulau-1", 2, "scan")) == 0
        assert phone.publish(topics.pump_in(A, "pulau-1", 3, "scan")) == NOT_AUTHORISED
        assert phone.publish(topics.shift_in(A, "pulau-1"), b'{"type":"hello"}') == 0
        assert wait_until(lambda: len(agent.topics()) == 2, 5), agent.topics()
        assert topics.pump_in(A, "pulau-1", 3, "scan") not in agent.topics()
        # The agent writes the views and replies, but only for its own station.
        assert agent.publish(topics.pump_view(A, 1)) in (0, NO_SUBSCRIBERS)
        assert agent.publish(topics.reply(A, "pulau-1")) in (0, NO_SUBSCRIBERS)
        assert agent.publish(topics.pump_view("34.401.02", 1)) == NOT_AUTHORISED
    finally:
        agent.close()
        phone.close()
        broker.close()


def test_pin_command_prints_config_the_agent_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("482913\n")
    assert main(["attendant", "pin", "--number", "07", "--name", "Budi", "--pin-file", str(pin_file)]) == 0
    text = capsys.readouterr().out
    table = tomllib.loads(text + '\n[attendant.devices]\npulau-1 = [1, 2]\n')
    cfg = parse_attendant(table["attendant"], {1, 2})
    assert cfg is not None and verify_pin("482913", cfg.people["07"].pin_hash)
    assert not verify_pin("482914", cfg.people["07"].pin_hash)
    assert "482913" not in text
    pin_file.write_text("12\n")
    assert main(["attendant", "pin", "--number", "07", "--name", "Budi", "--pin-file", str(pin_file)]) == 2
    assert json.dumps(cfg.devices) == '{"pulau-1": [1, 2]}'


def test_page_server_speaks_http11_only_with_the_station_certificate(tmp_path: Path) -> None:
    """Phones take HTTP/2 when offered; mosquitto's libwebsockets breaks static files over it."""
    pki.make_ca(tmp_path / "ca")
    pki.issue(tmp_path / "ca", tmp_path / "tls", "127.0.0.1", server_names=("127.0.0.1",))
    www = tmp_path / "www"
    (www / "vendor").mkdir(parents=True)
    (www / "index.html").write_text("<!doctype html><title>SPBU attendant</title>")
    (www / "vendor" / "zxing_reader.wasm").write_bytes(b"\0asm\1\0\0\0")
    dash = tmp_path / "dash"
    dash.mkdir()
    (dash / "index.html").write_text("<!doctype html><title>SPBU dashboard</title>")
    server = PageServer(www, tmp_path / "tls" / "127.0.0.1.crt", tmp_path / "tls" / "127.0.0.1.key",
                        host="127.0.0.1", port=0, dashboard=dash, dashboard_mqtt_port=9123).start()
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.crt"))
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
        base = f"https://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/?station={A}", context=context, timeout=5) as page:
            assert b"SPBU attendant" in page.read()
        with urllib.request.urlopen(f"{base}/vendor/zxing_reader.wasm", context=context, timeout=5) as wasm:
            assert wasm.headers["Content-Type"] == "application/wasm"  # compiled while it streams in
        with urllib.request.urlopen(f"{base}/dashboard/?station={A}", context=context, timeout=5) as page:
            assert b"SPBU dashboard" in page.read()
        with urllib.request.urlopen(f"{base}/dashboard/station.json", context=context, timeout=5) as where:
            assert json.load(where) == {"mqtt_port": 9123}  # the page's MQTT is on the broker, not here
        for path in ("/vendor/", "/../etc/passwd", "/dashboard/../../etc/passwd", "/dashboard/%2e%2e/%2e%2e/etc/passwd",
                     "/dashboard/vendor/zxing_reader.wasm"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{base}{path}", context=context, timeout=5)
            assert refused.value.code == 404
    finally:
        server.close()
