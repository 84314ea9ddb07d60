"""`spbu sim hq` without --db runs the national usage ledger on a private PostgreSQL: a fill
at one station reaches another station of its area as usage elsewhere (not only collected)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import topics
from simulators.broker import MosquittoBroker
from simulators.txgen import synthetic_tx
from tests.helpers import MqttRecorder, wait_until

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-01-05"


@pytest.mark.integration
def test_sim_hq_without_db_counts_usage_nationally(fresh_broker: MosquittoBroker) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", "hq", "--host", fresh_broker.host,
                             "--port", str(fresh_broker.port), "--vehicles", "50"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recorder = None
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "national usage ledger" in first and "private PostgreSQL" in first, first
        recorder = MqttRecorder(fresh_broker, [topics.POLICY, topics.usage("34.401.02")], "test-sim-hq")
        assert wait_until(lambda: bool(recorder.received(lambda t: t == topics.POLICY)), 10)
        policy = recorder.received(lambda t: t == topics.POLICY)[-1][1]
        assert policy["signed"]["usage_feed"]["offline_share"] == 0.5  # stations switch to the national quota
        sync = {"schema": "spbu.usage_sync/1", "station": "34.401.02", "day": DAY, "zone": "WIB", "since": None}
        recorder.client.publish(topics.usage_sync("34.401.02"), json.dumps(sync), qos=1).wait_for_publish(5)
        assert wait_until(lambda: bool(recorder.received(lambda t: t == topics.usage("34.401.02"))), 10)
        tx = synthetic_tx("34.401.01", 1, vehicle_id=4242, dispensed_ml=30_000, day=DAY, signed=False)
        recorder.client.publish(topics.tx("34.401.01"), json.dumps(tx), qos=1).wait_for_publish(5)

        def told() -> bool:
            return any(entry[0] == "4242" and entry[3] == [["34.401.01", 30_000]]
                       for _, body in recorder.received(lambda t: t == topics.usage("34.401.02"))
                       for entry in body["signed"]["entries"])
        assert wait_until(told, 10)
    finally:
        if recorder is not None:
            recorder.close()
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "34.401.01-00000001 34.401.01 solar 30000 ml" in out
