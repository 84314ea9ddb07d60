"""The station with the signed allow-list, end to end: a forged manifest is refused with an
alert while the list in force keeps serving; the honest next version installs as a delta;
the state topic shows the sync, and every message matches its schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.cli.demo import DemoStation
from agent.trust import root as trust
from simulators.broker import MosquittoBroker
from tests.conftest import validate
from tests.system.test_station_e2e import Recorder

pytestmark = pytest.mark.integration


def wait_for(condition: object, timeout_s: float = 20.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_forged_manifest_refused_honest_delta_installed(tmp_path: Path, fresh_broker: MosquittoBroker) -> None:
    demo = DemoStation(pumps=1, broker=fresh_broker, workdir=tmp_path / "demo", quiet=True)
    recorder = Recorder(fresh_broker)
    try:
        demo.start()
        assert demo.station is not None and demo.hq is not None
        docs = demo.station.docs
        assert docs.allowlist is not None and docs.allowlist.version == 1
        leaving = demo.registry[0]
        assert docs.allowlist.lookup(leaving.vehicle_id) is not None

        # A forger re-signs headquarters' manifest as version 2 with a key of its own.
        body = json.loads(demo.hq.releases.manifest_path(1).read_bytes())["signed"]
        body["version"] = 2
        forged = trust.sign(body, [Ed25519PrivateKey.generate()])
        demo.hq.client.publish(topics.ALLOWLIST_MANIFEST, forged, qos=1, retain=True).wait_for_publish(10)
        wait_for(lambda: any(e.get("alert") == "allowlist_rejected" for e in recorder.on("/event")))
        alert = next(e for e in recorder.on("/event") if e.get("alert") == "allowlist_rejected")
        assert alert["check"] == "unknown key"
        wait_for(lambda: recorder.on("/state")[-1].get("allowlist_sync", {}).get("state") == "rejected")
        assert docs.allowlist.version == 1 and docs.allowlist.lookup(leaving.vehicle_id) is not None

        # Headquarters' honest version 2: one vehicle leaves the list; it arrives as a delta.
        demo.hq.registry = demo.registry[1:]
        demo.hq.publish_allowlist()
        wait_for(lambda: docs.allowlist is not None and docs.allowlist.version == 2)
        assert docs.allowlist.lookup(leaving.vehicle_id) is None
        assert docs.allowlist.lookup(demo.registry[1].vehicle_id) is not None
        wait_for(lambda: recorder.on("/state")[-1].get("allowlist_sync", {}).get("state") == "installed")
        assert recorder.on("/state")[-1]["allowlist_version"] == 2
        delta = json.loads(demo.hq.releases.manifest_path(2).read_bytes())["signed"]["deltas"][-1]
        assert delta["length"] < json.loads(demo.hq.releases.manifest_path(2).read_bytes())["signed"][
            "snapshot"]["length"] // 4
        time.sleep(0.3)
        for state in recorder.on("/state"):
            validate("state", state)
        for event in recorder.on("/event"):
            validate("event", event)
        for manifest in recorder.on("allowlist/manifest"):
            validate("allowlist-manifest", manifest)
    finally:
        recorder.close()
        demo.close()
