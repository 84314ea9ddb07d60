"""TLS, client certificates and ACLs on real mosquitto, configured from deploy/mosquitto/*.in
with certificates from hq/pki.py.

MQTT 5 clients, so a refused publish comes back as PUBACK reason code 135 (not authorised)
instead of mosquitto's silent drop for MQTT 3.1.1; non-delivery is also proven with a
subscriber and a sentinel message sent after the refused one."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli.broker_config import (
    StationBroker,
    write_agent_login,
    write_hq_broker,
    write_password_file,
    write_station_broker,
)
from agent.cli.main import main as cli_main
from agent.trust.acks import verify_ack
from agent.trust.manager_keys import manager_key
from agent.trust.signing import key_id
from agent.trust.tx_sign import load_station_key, sign_record
from hq import pki
from hq.collector import Collector, CollectorStore
from hq.tx_verify import StationKeys
from simulators.broker import MosquittoBroker, free_port
from simulators.txgen import sim_ack_key, sim_station_keys, synthetic_tx
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

A, B = "34.401.01", "34.401.02"
SERVICE = "hq-collector"
NOT_AUTHORISED = 135


@dataclass(frozen=True)
class Pki:
    ca: Path
    certs: Path

    def tls(self, name: str) -> tuple[Path, Path, Path]:
        return self.ca, self.certs / f"{name}.crt", self.certs / f"{name}.key"


class Client:
    """An MQTT 5 client that records what it receives and the reason code of each publish."""

    def __init__(self, name: str, port: int, tls: tuple[Path, Path, Path] | None = None, ws: bool = False,
                 login: tuple[str, str] | None = None, server_ca: Path | None = None) -> None:
        """server_ca: TLS that checks only the server (the dashboard's WebSockets)."""
        self.received: list[tuple[str, bytes]] = []
        self.codes: dict[int, int] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.refused: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}", protocol=mqtt.MQTTv5,
                                  transport="websockets" if ws else "tcp")
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        elif server_ca is not None:
            self.client.tls_set(ca_certs=str(server_ca))
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.connect("localhost" if tls or server_ca else "127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = int(reason.value)
        else:
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.codes[mid] = int(reason.value)

    def ready(self) -> Client:
        assert self.connected.wait(10), f"not connected (refused: {self.refused})"
        return self

    def subscribe(self, *filters: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(5)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        assert wait_until(lambda: info.mid in self.codes, 5), f"no PUBACK for {topic}"
        return self.codes[info.mid]

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.received]

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.received if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    pki.make_ca(root / "ca")
    for name in (A, B, SERVICE):
        pki.issue(root / "ca", root / "certs", name)
    pki.issue(root / "ca", root / "certs", "localhost", server_names=("localhost", "127.0.0.1"))
    return Pki(root / "ca" / "ca.crt", root / "certs")


@pytest.fixture
def hq_broker(certs: Pki, tmp_path: Path) -> Iterator[MosquittoBroker]:
    port = free_port()
    conf = write_hq_broker(tmp_path / "hq-etc", port, certs.ca, certs.certs / "localhost.crt",
                           certs.certs / "localhost.key", pki.write_crl(certs.ca.parent), bind="127.0.0.1",
                           service=SERVICE)
    (tmp_path / "hq-broker").mkdir()
    broker = MosquittoBroker(port=port, workdir=tmp_path / "hq-broker", config=conf.read_text())
    broker.start()
    yield broker
    broker.close()


def test_a_station_writes_and_reads_only_its_own_topics(certs: Pki, hq_broker: MosquittoBroker) -> None:
    port = hq_broker.port
    hq = Client("hq", port, certs.tls(SERVICE)).ready()
    a = Client("a", port, certs.tls(A)).ready()
    b = Client("b", port, certs.tls(B)).ready()
    try:
        hq.subscribe("spbu/v1/#")
        a.subscribe("spbu/v1/+/tx", "hq/v1/#")
        b.subscribe("hq/v1/allowlist/#")

        assert a.publish(f"spbu/v1/{A}/tx", b"mine") == 0
        # Another station's transactions and an allow-list: refused, and nobody receives them.
        assert a.publish(f"spbu/v1/{B}/tx", b"forged") == NOT_AUTHORISED
        assert a.publish("hq/v1/allowlist", b"forged") == NOT_AUTHORISED
        assert a.publish("hq/v1/allowlist/delta", b"forged") == NOT_AUTHORISED
        assert a.publish(f"hq/v1/ack/{A}", b"forged") == NOT_AUTHORISED
        assert a.publish(f"spbu/v1/{A}/event", b"sentinel") == 0
        assert wait_until(lambda: f"spbu/v1/{A}/event" in hq.topics(), 5)
        assert hq.payloads(f"spbu/v1/{A}/tx") == [b"mine"]
        assert hq.payloads(f"spbu/v1/{B}/tx") == []

        # A station cannot read another station's transactions (even with a wildcard), nor
        # another station's acknowledgements or commands; it does read the documents.
        assert b.publish(f"spbu/v1/{B}/tx", b"b's") == 0
        assert hq.publish(f"hq/v1/ack/{B}") == 0
        assert hq.publish(f"hq/v1/cmd/{B}") == 0
        assert hq.publish("hq/v1/allowlist", b"list") == 0
        assert hq.publish(f"hq/v1/cmd/{A}", b"for a") == 0
        assert wait_until(lambda: f"hq/v1/cmd/{A}" in a.topics(), 5)
        assert wait_until(lambda: hq.payloads(f"spbu/v1/{B}/tx") == [b"b's"], 5)
        assert sorted(a.topics()) == ["hq/v1/allowlist", f"hq/v1/cmd/{A}"]
        assert b.payloads("hq/v1/allowlist") == [b"list"]
    finally:
        for client in (hq, a, b):
            client.close()


def test_no_client_certificate_no_connection(certs: Pki, hq_broker: MosquittoBroker) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-anon", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(certs.ca))
    with pytest.raises((ssl.SSLError, OSError)):
        client.connect("localhost", hq_broker.port)
        for _ in range(20):  # the refusal may surface on the first read
            client.loop(0.1)
            assert not client.is_connected()
        raise OSError("never connected")


def test_collectors_share_the_subscription_over_tls_and_acls(certs: Pki, hq_broker: MosquittoBroker,
                                                             pg_dsn: str) -> None:
    db = pg_dsn
    collectors = [Collector("localhost", hq_broker.port, db, name=f"c{i}", tls=certs.tls(SERVICE),
                            ack_key=sim_ack_key(), verifier=sim_station_keys([A]).verify).start()
                  for i in (1, 2)]
    a = Client("a", hq_broker.port, certs.tls(A)).ready()
    try:
        a.subscribe(f"hq/v1/ack/{A}")
        for seq in range(1, 41):
            assert a.publish(f"spbu/v1/{A}/tx", json.dumps(synthetic_tx(A, seq, 9, 1000)).encode()) == 0
        ring = {key_id(sim_ack_key().public_key()): sim_ack_key().public_key()}
        assert wait_until(lambda: sum(len(verify_ack(p, A, ring).ids) for p in a.payloads(f"hq/v1/ack/{A}")) >= 40,
                          10)
        store = CollectorStore(db)
        try:
            assert store.count() == 40
        finally:
            store.close()
    finally:
        a.close()
        for collector in collectors:
            collector.close()


def start_station_broker(cfg: StationBroker, etc: Path, tmp_path: Path) -> MosquittoBroker:
    conf = write_station_broker(cfg, etc)
    write_password_file(etc / "dashboard.passwd", {"dashboard": "s3cret"})
    write_agent_login(etc)
    (tmp_path / "station-broker").mkdir()
    station_broker = MosquittoBroker(port=cfg.agent_port, workdir=tmp_path / "station-broker",
                                     config=conf.read_text())
    station_broker.start()
    assert wait_until(lambda: listening(cfg.ws_port), 10)  # start() waited for the first listener only
    return station_broker


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


def agent_login(etc: Path) -> tuple[str, str]:
    return "spbu-agent", (etc / "agent.password").read_text().strip()


def test_station_broker_dashboard_and_bridge_to_headquarters(certs: Pki, hq_broker: MosquittoBroker,
                                                             tmp_path: Path) -> None:
    etc = tmp_path / "station-etc"
    cfg = StationBroker(A, "localhost", hq_broker.port, certs.ca, certs.certs / f"{A}.crt",
                        certs.certs / f"{A}.key", agent_port=free_port(), ws_port=free_port(), ws_interface="lo",
                        ws_certfile=certs.certs / "localhost.crt", ws_keyfile=certs.certs / "localhost.key")
    station_broker = start_station_broker(cfg, etc, tmp_path)
    hq = Client("hq", hq_broker.port, certs.tls(SERVICE)).ready()
    agent = Client("agent", cfg.agent_port, login=agent_login(etc)).ready()
    intruder = Client("intruder", cfg.ws_port, ws=True, login=("dashboard", "wrong"), server_ca=certs.ca)
    dashboard = Client("dashboard", cfg.ws_port, ws=True, login=("dashboard", "s3cret"), server_ca=certs.ca).ready()
    try:
        assert wait_until(lambda: intruder.refused is not None, 5) and not intruder.connected.is_set()
        hq.subscribe("spbu/v1/#")
        agent.subscribe(f"hq/v1/ack/{A}", f"hq/v1/cmd/{A}")
        dashboard.subscribe(f"spbu/v1/{A}/#")

        # The bridge carries the station's topics out over TLS with the station's certificate.
        assert wait_until(lambda: agent.publish(f"spbu/v1/{A}/tx", b"t1") == 0 and
                          hq.payloads(f"spbu/v1/{A}/tx") != [], 15, step_s=0.5), station_broker.log_tail()
        # ...and headquarters' acknowledgements for this station in; not another station's.
        assert hq.publish(f"hq/v1/ack/{B}", b"not yours") < NOT_AUTHORISED  # 16: nobody subscribed
        assert hq.publish(f"hq/v1/ack/{A}", b"yours") == 0
        assert wait_until(lambda: agent.payloads(f"hq/v1/ack/{A}") == [b"yours"], 10)
        assert f"hq/v1/ack/{B}" not in agent.topics()

        # The agent on loopback cannot write for another station either.
        assert agent.publish(f"spbu/v1/{B}/tx", b"forged") == NOT_AUTHORISED

        # The dashboard reads the station's live topics and may send commands, nothing else.
        assert agent.publish(f"spbu/v1/{A}/event", b"e1") == 0
        assert wait_until(lambda: dashboard.payloads(f"spbu/v1/{A}/event") == [b"e1"], 5)
        assert dashboard.publish(f"spbu/v1/{A}/tx", b"forged by the dashboard") == NOT_AUTHORISED
        assert dashboard.publish("hq/v1/allowlist", b"forged") == NOT_AUTHORISED
        assert dashboard.publish(f"hq/v1/cmd/{A}", b"signed command") == 0
        assert wait_until(lambda: agent.payloads(f"hq/v1/cmd/{A}") == [b"signed command"], 5)
        assert agent.publish(f"spbu/v1/{A}/tx", b"t2") == 0  # sentinel behind the refused ones
        assert wait_until(lambda: hq.payloads(f"spbu/v1/{A}/tx") == [b"t1", b"t2"], 10), hq.topics()
        assert hq.payloads(f"spbu/v1/{B}/tx") == []
    finally:
        for client in (hq, agent, intruder, dashboard):
            client.close()
        station_broker.close()


def test_item7_only_the_agent_publishes_on_the_station_and_headquarters_stores_only_signed_sales(
        certs: Pki, hq_broker: MosquittoBroker, tmp_path: Path, pg_dsn: str) -> None:
    """Issue 17 item 7: an anonymous client on the station's loopback listener published
    sales that reached headquarters. Now the listener wants the agent's login, and the
    collector stores (and acknowledges) only records signed with the station's own key."""
    etc = tmp_path / "station-etc"
    cfg = StationBroker(A, "localhost", hq_broker.port, certs.ca, certs.certs / f"{A}.crt",
                        certs.certs / f"{A}.key", agent_port=free_port(), ws_port=free_port(), ws_interface="lo",
                        ws_certfile=certs.certs / "localhost.crt", ws_keyfile=certs.certs / "localhost.key")
    station_broker = start_station_broker(cfg, etc, tmp_path)
    keys = StationKeys()
    assert keys.add_certificate((certs.certs / f"{A}.crt").read_bytes(),
                                x509.load_pem_x509_certificate(certs.ca.read_bytes())) == A
    collector = Collector("localhost", hq_broker.port, pg_dsn, name="c7", tls=certs.tls(SERVICE),
                          ack_key=sim_ack_key(), verifier=keys.verify).start()
    anonymous = Client("anonymous", cfg.agent_port)
    guesser = Client("guesser", cfg.agent_port, login=("spbu-agent", "guess"))
    agent = Client("agent7", cfg.agent_port, login=agent_login(etc)).ready()
    try:
        assert wait_until(lambda: anonymous.refused is not None and guesser.refused is not None, 5)
        assert not anonymous.connected.is_set() and not guesser.connected.is_set()
        agent.subscribe(f"hq/v1/ack/{A}")
        station_key = load_station_key(certs.certs / f"{A}.key")
        unsigned = synthetic_tx(A, 1, 9, 1000, signed=False)
        other_key = sign_record(synthetic_tx(A, 2, 9, 1000, signed=False), ec.generate_private_key(ec.SECP256R1()))
        altered = {**sign_record(synthetic_tx(A, 3, 9, 1000, signed=False), station_key), "dispensed_ml": 1}
        for record in (unsigned, other_key, altered):
            assert agent.publish(f"spbu/v1/{A}/tx", json.dumps(record).encode()) == 0
        assert wait_until(lambda: collector.rejected == 3, 15, step_s=0.2), station_broker.log_tail()
        good = sign_record(synthetic_tx(A, 4, 9, 1000, signed=False), station_key)
        assert agent.publish(f"spbu/v1/{A}/tx", json.dumps(good).encode()) == 0
        ring = {key_id(sim_ack_key().public_key()): sim_ack_key().public_key()}
        assert wait_until(lambda: agent.payloads(f"hq/v1/ack/{A}") != [], 10)
        acked = [i for p in agent.payloads(f"hq/v1/ack/{A}") for i in verify_ack(p, A, ring).ids]
        assert acked == [good["tx_id"]], "only the signed record is acknowledged"
        assert collector.store.tx_ids() == [good["tx_id"]]
    finally:
        for client in (anonymous, guesser, agent):
            client.close()
        collector.close()
        station_broker.close()


def test_item9_a_revoked_station_certificate_is_refused_by_headquarters(tmp_path: Path) -> None:
    """Station certificates live 825 days: headquarters' broker checks the CA's CRL, so one
    station can be shut out at once (issue 17, item 9)."""
    ca = tmp_path / "ca"
    pki.make_ca(ca)
    for name in (A, B, SERVICE):
        pki.issue(ca, tmp_path / "certs", name)
    pki.issue(ca, tmp_path / "certs", "localhost", server_names=("localhost", "127.0.0.1"))
    own = Pki(ca / "ca.crt", tmp_path / "certs")
    pki.revoke(ca, own.certs / f"{B}.crt")
    port = free_port()
    conf = write_hq_broker(tmp_path / "hq-etc", port, own.ca, own.certs / "localhost.crt",
                           own.certs / "localhost.key", ca / "crl.pem", bind="127.0.0.1", service=SERVICE)
    (tmp_path / "hq-broker").mkdir()
    broker = MosquittoBroker(port=port, workdir=tmp_path / "hq-broker", config=conf.read_text()).start()
    try:
        a = Client("a-crl", port, own.tls(A)).ready()
        a.close()
        revoked = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-revoked", protocol=mqtt.MQTTv5)
        revoked.tls_set(ca_certs=str(own.ca), certfile=str(own.certs / f"{B}.crt"),
                        keyfile=str(own.certs / f"{B}.key"))
        with pytest.raises((ssl.SSLError, OSError)):
            revoked.connect("localhost", port)
            for _ in range(20):  # the refusal may surface on the first read
                revoked.loop(0.1)
                assert not revoked.is_connected()
            raise OSError("never connected")
    finally:
        broker.close()


def test_item4_dashboard_password_crosses_the_lan_only_over_tls_and_signs_nothing(
        certs: Pki, hq_broker: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 17 item 4: the manager's signing key came from the broker password, which crossed
    ws:// in clear and sat in plain text beside the broker's config."""
    etc = tmp_path / "station-etc"
    out = cli_main(["keys", "broker-config", "--station", A, "--hq-host", "localhost", "--hq-port",
                    str(hq_broker.port), "--ca", str(certs.ca), "--cert", str(certs.certs / f"{A}.crt"),
                    "--key", str(certs.certs / f"{A}.key"), "--ws-interface", "lo", "--ws-port", str(free_port()),
                    "--ws-cert", str(certs.certs / "localhost.crt"), "--ws-key", str(certs.certs / "localhost.key"),
                    "--out", str(etc)])
    assert out == 0
    printed = capsys.readouterr().out
    password = printed.split("dashboard user dashboard, password ")[1].split(" ")[0]
    assert not any(password in p.read_text(errors="replace") for p in etc.iterdir() if p.is_file()), \
        "the dashboard password is stored in clear"
    conf = (etc / "spbu.conf").read_text()
    agent_port, ws_port = (int(line.split()[1]) for line in conf.splitlines() if line.startswith("listener "))
    station_broker = MosquittoBroker(port=agent_port, workdir=etc, config=conf).start()
    try:
        assert wait_until(lambda: listening(ws_port), 10)  # start() waited for the first listener only
        try:  # the password sent over plain ws:// (readable by anyone on the LAN)
            plain = Client("plain-ws", ws_port, ws=True, login=("dashboard", password))
            in_clear = wait_until(plain.connected.is_set, 2)
            plain.close()
        except (OSError, mqtt.WebsocketConnectionError):
            in_clear = False
        assert not in_clear, "the password was accepted over plain ws://"
        Client("wss", ws_port, ws=True, login=("dashboard", password), server_ca=certs.ca).ready().close()
    finally:
        station_broker.close()
    # The manager's key comes from a passphrase the broker never sees; the same text is refused.
    same = tmp_path / "same"
    same.write_text(password + "\n")
    assert cli_main(["keys", "manager", "--station", A, "--passphrase-file", str(same),
                     "--broker-password-file", str(same)]) == 2
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a different long passphrase\n")
    assert cli_main(["keys", "manager", "--station", A, "--passphrase-file", str(passphrase),
                     "--broker-password-file", str(same)]) == 0
    trusted = capsys.readouterr().out
    from_password = key_id(manager_key(A, "dashboard", password).public_key())
    assert key_id(manager_key(A, "dashboard", "a different long passphrase").public_key()) in trusted
    assert from_password not in trusted, "the broker password would sign commands"
