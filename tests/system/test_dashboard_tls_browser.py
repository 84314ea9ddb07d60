"""The manager's dashboard as a station deploys it: the broker from `spbu keys broker-config`
(MQTT over TLS WebSockets, password, ACL), the page from `spbu attendant serve` (HTTPS/1.1),
headless Chromium with HTTP/2 enabled, as a tablet's browser, trusting only the station's key."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli.broker_config import StationBroker, write_agent_login, write_password_file, write_station_broker
from agent.cli.dashboard_files import DashboardMissing, dashboard_dir
from hq import pki
from simulators.broker import MosquittoBroker, free_port
from tests.browser import CHROMIUM, CHROMIUM_ARGS, skip_reason

pytestmark = [pytest.mark.browser, pytest.mark.integration]

A = "34.401.01"
PASSWORD = "tablet-login-9f2c"




if (reason := skip_reason(dashboard_dir, DashboardMissing)) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def spki_pin(cert: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value: this one key, nothing else."""
    spki = x509.load_pem_x509_certificate(cert.read_bytes()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Station:
    def __init__(self, tmp: Path) -> None:
        pki.make_ca(tmp / "ca")
        pki.issue(tmp / "ca", tmp / "tls", "127.0.0.1", server_names=("127.0.0.1",))
        pki.issue(tmp / "ca", tmp / "tls", A)
        self.cert, self.key = tmp / "tls" / "127.0.0.1.crt", tmp / "tls" / "127.0.0.1.key"
        etc = tmp / "etc"
        self.cfg = StationBroker(A, "127.0.0.1", free_port(), tmp / "ca" / "ca.crt", tmp / "tls" / f"{A}.crt",
                                 tmp / "tls" / f"{A}.key", agent_port=free_port(), ws_port=free_port(),
                                 ws_interface="lo", ws_certfile=self.cert, ws_keyfile=self.key)
        conf = write_station_broker(self.cfg, etc)
        write_password_file(etc / "dashboard.passwd", {"dashboard": PASSWORD})
        write_agent_login(etc)
        self.agent_password = (etc / "agent.password").read_text().strip()
        (tmp / "broker").mkdir()
        self.broker = MosquittoBroker(port=self.cfg.agent_port, workdir=tmp / "broker", config=conf.read_text())
        self.page_port = free_port()
        self.attendant_www = tmp / "attendant-www"  # this test is about the dashboard's half
        self.attendant_www.mkdir()
        (self.attendant_www / "index.html").write_text("<!doctype html><title>SPBU attendant</title>")
        self.pages: subprocess.Popen[bytes] | None = None

    def start(self) -> Station:
        self.broker.start()
        # The page server as its systemd unit runs it: the real command, its own process.
        self.pages = subprocess.Popen(
            [sys.executable, "-m", "agent", "attendant", "serve", "--cert", str(self.cert), "--key", str(self.key),
             "--host", "127.0.0.1", "--port", str(self.page_port), "--dir", str(self.attendant_www),
             "--dashboard-mqtt-port", str(self.cfg.ws_port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.pages.stdout is not None
        line = self.pages.stdout.readline().decode()
        assert "attendant page on" in line, line
        return self

    def publish_retained(self, messages: dict[str, dict[str, object]]) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-test")
        client.username_pw_set("spbu-agent", self.agent_password)
        client.connect("127.0.0.1", self.cfg.agent_port)
        client.loop_start()
        try:
            for topic, body in messages.items():
                client.publish(topic, json.dumps(body), qos=1, retain=True).wait_for_publish(5)
        finally:
            client.loop_stop()
            client.disconnect()

    def close(self) -> None:
        if self.pages is not None:
            self.pages.terminate()
            self.pages.wait(10)
        self.broker.close()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    st = Station(tmp_path).start()
    try:
        yield st
    finally:
        st.close()


def test_tablet_loads_the_dashboard_over_https_and_mqtt_over_wss(station: Station) -> None:
    station.publish_retained({
        f"spbu/v1/{A}/state": {"state": "online", "station": A},
        f"spbu/v1/{A}/pump/1": {"pump": 1, "state": "idle", "product": "pertalite"},
    })
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(station.cert)}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 800})
            reply = tab.goto(f"https://127.0.0.1:{station.page_port}/dashboard/?station={A}")
            assert reply is not None and reply.ok
            tab.fill("#login-user", "dashboard")
            tab.fill("#login-password", "wrong-password")
            tab.keyboard.press("Enter")
            expect(tab.locator("#login-error")).not_to_be_empty(timeout=10_000)
            tab.fill("#login-password", PASSWORD)
            tab.keyboard.press("Enter")
            tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
            expect(tab.locator("#agent-status")).to_have_attribute("data-state", "ok")
            expect(tab.locator(".pump[data-pump='1'] .state")).to_have_text("Siap")
        finally:
            browser.close()


def test_the_broker_no_longer_serves_pages_that_break_over_tls(station: Station) -> None:
    """mosquitto's http_dir over TLS offers HTTP/2 and then fails (ERR_HTTP2_PROTOCOL_ERROR):
    the station's broker config must not serve the page there."""
    settings = [line.split()[0] for line in (station.broker.workdir / "mosquitto.conf").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "listener" in settings and "http_dir" not in settings
