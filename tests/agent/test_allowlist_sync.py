"""The allow-list over a real mosquitto: snapshot, then delta; stopped mid-transfer (the agent,
then the broker) and resumed, fetching only what is missing."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.allowlist.repo import AllowListRepo
from agent.allowlist.sync import AllowListSync, SyncEvent
from agent.trust.root import TrustStore
from hq.releases import Publisher
from simulators.broker import MosquittoBroker
from tests.allowlist_fixtures import Headquarters, registry

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
ENTRIES = registry(20_000)  # ~130 kB: about 32 chunks of 4 KiB


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


class CountingRepo(AllowListRepo):
    """The real repository, counting the chunks it is handed and able to signal after n."""

    def __init__(self, root: Path, trust: TrustStore, stop_after: int = 0) -> None:
        super().__init__(root, trust)
        self.puts = 0
        self.stop_after = stop_after
        self.reached = threading.Event()

    def put_chunk(self, digest: str, length: int, data: bytes) -> None:
        super().put_chunk(digest, length, data)
        self.puts += 1
        if self.stop_after and self.puts >= self.stop_after:
            self.reached.set()
            time.sleep(0.2)  # hold the worker: the stop lands mid-transfer


class StationSide:
    def __init__(self, broker: MosquittoBroker, directory: Path, root_file: Path, stop_after: int = 0) -> None:
        self.trust = TrustStore.from_root_file(root_file, directory / "trust.json")
        self.repo = CountingRepo(directory / "allowlist", self.trust, stop_after)
        self.events: queue.Queue[SyncEvent] = queue.Queue()
        self.sync = AllowListSync(broker.host, broker.port, "34.401.01", self.repo, self.trust, self.events.put,
                                  window=2, chunk_timeout_s=1.0)
        self.sync.start()

    def wait_installed(self, version: int, timeout_s: float = 30.0) -> list[SyncEvent]:
        seen: list[SyncEvent] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            seen.append(event)
            assert event.kind != "rejected", event
            if event.kind == "installed" and event.version == version:
                return seen
        raise AssertionError(f"version {version} not installed in {timeout_s} s; saw {seen}")


def publish(broker: MosquittoBroker, hq: Headquarters, version: int) -> int:
    publisher = Publisher(broker.host, broker.port, client_id=f"hq-{uuid.uuid4().hex[:6]}")
    try:
        return publisher.publish(hq.manifest(version), hq.chunks(version), roots=hq.roots)
    finally:
        publisher.close()


@pytest.fixture
def hq(tmp_path: Path) -> Headquarters:
    return Headquarters(tmp_path / "hq")


@pytest.fixture
def listener(mosquitto: MosquittoBroker) -> Iterator[queue.Queue[mqtt.MQTTMessage]]:
    seen: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda c, u, m: seen.put(m)
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe([(topics.ALLOWLIST_MANIFEST, 1), (topics.ROOT_ALL, 1)])
    client.loop_start()
    yield seen
    client.disconnect()
    client.loop_stop()


def test_snapshot_then_delta_through_the_broker(tmp_path: Path, mosquitto: MosquittoBroker, hq: Headquarters,
                                                listener: queue.Queue[mqtt.MQTTMessage]) -> None:
    v1 = hq.release(ENTRIES)
    publish(mosquitto, hq, v1)
    station = StationSide(mosquitto, tmp_path / "st", hq.root_file())
    try:
        events = station.wait_installed(1)
        assert station.repo.puts == len(hq.chunks(v1))
        assert any(e.kind == "progress" and e.need == len(hq.chunks(v1)) for e in events)
        changed = dict(ENTRIES)
        for vid in list(changed)[:200]:
            del changed[vid]
        changed[12345] = ("motorcycle", 1, "active")
        v2 = hq.release(changed)
        publish(mosquitto, hq, v2)
        station.wait_installed(2)
        delta_chunks = json.loads(hq.manifest(v2))["signed"]["deltas"][-1]["chunks"]
        assert station.repo.puts - len(hq.chunks(v1)) == len(delta_chunks) < len(hq.chunks(v1)) // 4
        current = station.repo.open_current()
        assert current is not None and current.version == 2 and current.store.count == len(changed)
        assert current.lookup(12345) is not None and current.lookup(next(iter(ENTRIES))) is None
    finally:
        station.sync.close()
    # What headquarters put on the wire matches the published schemas.
    manifest_schema, root_schema = schema("allowlist-manifest.schema.json"), schema("root.schema.json")
    validated = 0
    while not listener.empty():
        message = listener.get()
        payload = json.loads(message.payload)
        jsonschema.validate(payload, manifest_schema if message.topic == topics.ALLOWLIST_MANIFEST else root_schema)
        validated += 1
    assert validated >= 3  # two manifests and the root


def test_agent_stopped_mid_transfer_resumes_with_only_missing_chunks(
        tmp_path: Path, mosquitto: MosquittoBroker, hq: Headquarters) -> None:
    v1 = hq.release(ENTRIES)
    total = len(hq.chunks(v1))
    publish(mosquitto, hq, v1)
    first = StationSide(mosquitto, tmp_path / "st", hq.root_file(), stop_after=8)
    assert first.repo.reached.wait(30)
    first.sync.close()  # the agent stops (power cut, update, crash) mid-transfer
    kept = len(list((tmp_path / "st" / "allowlist" / "chunks").glob("[0-9a-f]*")))
    assert 8 <= kept < total
    assert first.repo.current_version() is None
    second = StationSide(mosquitto, tmp_path / "st", hq.root_file())
    try:
        second.wait_installed(1)
        assert second.repo.puts == total - kept  # only what was missing
        current = second.repo.open_current()
        assert current is not None and current.store.count == len(ENTRIES)
    finally:
        second.sync.close()


def test_broker_stopped_mid_transfer_resumes(tmp_path: Path, fresh_broker: MosquittoBroker,
                                             hq: Headquarters) -> None:
    v1 = hq.release(ENTRIES)
    total = len(hq.chunks(v1))
    publish(fresh_broker, hq, v1)
    station = StationSide(fresh_broker, tmp_path / "st", hq.root_file(), stop_after=6)
    try:
        assert station.repo.reached.wait(30)
        station.repo.stop_after = 0
        fresh_broker.stop()  # no persistence: every retained message is gone with it
        time.sleep(1.0)
        fresh_broker.start()
        publish(fresh_broker, hq, v1)  # headquarters puts its release back
        station.wait_installed(1, timeout_s=60)
        assert total <= station.repo.puts <= total + 2  # at most the in-flight window again
    finally:
        station.sync.close()


def test_cli_publish_reaches_a_station(tmp_path: Path, mosquitto: MosquittoBroker, hq: Headquarters,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.main import main

    v1 = hq.release(ENTRIES)
    root = hq.root_file()
    assert main(["allowlist", "publish", "--repo", str(hq.releases.dir), "--root", str(root),
                 "--host", mosquitto.host, "--port", str(mosquitto.port)]) == 0
    assert f"published allow-list version {v1}" in capsys.readouterr().out
    station = StationSide(mosquitto, tmp_path / "st", root)
    try:
        station.wait_installed(v1)
        assert station.repo.puts == len(hq.chunks(v1))
    finally:
        station.sync.close()
