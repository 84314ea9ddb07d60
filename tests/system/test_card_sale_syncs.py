"""A card sale on storage that takes 20 ms per fsync: the station loop pays one sync per
scan (the session row and its postpayment together) and none for the payment's steps,
yet no request reaches the terminal before its step row is on the card.

A child process runs the journal with group commit and the payment desk against the EDC
terminal simulator on a pseudo-terminal, under the fsync shim, which logs every sync
(thread, file, start, end on the monotonic clock)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, queue, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from agent.journal import Journal
from agent.payments.desk import DONE, PaymentChoice, PaymentDesk
from hal.edc import EdcTerminal
from simulators.edc import EdcSim

class Noting(Journal):
    '''Notes when each of the desk's commits returned.'''
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.lazy_at = []
    def lazy(self, urgent=False):
        outer = super().lazy(urgent)
        journal = self
        class Ctx:
            def __enter__(self):
                return outer.__enter__()
            def __exit__(self, *exc):
                result = outer.__exit__(*exc)
                journal.lazy_at.append(time.monotonic())
                return result
        return Ctx()

work = Path(sys.argv[1])
sim = EdcSim(work / "batch.json", ack_timeout_ms=300)
sim.start()
events = queue.Queue()
terminal = EdcTerminal(sim.path, events.put, ack_timeout_s=0.3, response_timeout_s=5)
sent = []  # (monotonic, latest desk commit returned before it)
real_submit = terminal.submit
def submit(request):
    sent.append((time.monotonic(), journal.lazy_at[-1] if journal.lazy_at else 0.0))
    real_submit(request)
terminal.submit = submit
terminal.start()
journal = Noting(work / "journal.sqlite", group_commit=True)
desk = PaymentDesk(journal, terminal, "WIB", lambda *a: None, lambda e: None, lambda *a: False,
                   lambda db, record: None)
deadline = time.monotonic() + 10
while not desk.available and time.monotonic() < deadline:
    time.sleep(0.01)
main = threading.get_native_id()
marks = []
for i in range(3):
    marks.append(time.monotonic())
    choice = PaymentChoice("card")
    session = journal.open_session("34.401.01", 1, 100 + i, "B 1 XY", "pertalite", "2026-11-30", 60_000, 0,
                                   10_000, 10_000, extra=desk.postpay_with_session(1, choice, 10_000))
    marks.append(time.monotonic())
    record = {"tx_id": session.tx_id, "station": "34.401.01", "pump": 1, "product": "pertalite",
              "dispensed_ml": 5_000, "amount_idr": 50_000, "unit_price_idr": 10_000}
    keep = desk.on_close(session, 5_000, 50_000, record)
    journal.close_session(session, 5_000, 50_000, "nozzle_hung", None, extra=keep)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            desk.on_event(events.get(timeout=0.01))
        except queue.Empty:
            pass
        desk.tick(time.monotonic())
        if desk.store.open_payments("delivering", "settling", "orphan", "charging") == []:
            break
marks.append(time.monotonic())
states = [r[0] for r in journal.read("SELECT state FROM payments ORDER BY pay_id")]
print(json.dumps({"main": main, "marks": marks, "sent": sent, "states": states,
                  "charged": sim.net_charged()}))
terminal.close()
sim.close()
journal.close()
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the fsync shim (`make test` installs gcc)")
def test_card_sale_costs_the_station_loop_one_sync_and_each_request_waits_for_its_row(tmp_path: Path) -> None:
    from tests.bench.fsync_shim import build_shim, read_log

    lib = build_shim(tmp_path)
    log = tmp_path / "syncs.log"
    env = {**os.environ, "LD_PRELOAD": str(lib), "SPBU_FSYNC_LOG": str(log), "SPBU_FSYNC_DELAY_US": "20000"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(ROOT)], env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["states"] == ["done"] * 3
    assert sorted(out["charged"].values()) == [50_000] * 3  # each sale charged once, the metered amount
    wal = [(tid, start, end) for tid, start, end, name in read_log(log) if name.endswith("-wal")]
    marks = out["marks"]
    for i in range(3):
        opened, paid = (marks[2 * i], marks[2 * i + 1]), (marks[2 * i + 1], marks[2 * i + 2])
        on_loop = [s for tid, s, _ in wal if tid == out["main"]]
        assert sum(opened[0] <= s < opened[1] for s in on_loop) == 1  # the session and its payment: one sync
        assert sum(paid[0] <= s < paid[1] for s in on_loop) == 0  # close, steps, answer, settlement: none
    assert len(out["sent"]) == 3
    for at, committed in out["sent"]:
        # a sync of the journal began after the step's commit and was over before the request left
        assert any(committed <= start and end <= at for _, start, end in wal), (at, committed)
