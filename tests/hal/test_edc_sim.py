"""`spbu sim edc`: the terminal simulator as a program, driven through the agent's own EDC
driver over its pseudo-terminal; and the simulator's ledger across a power cycle."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hal import ecr_proto as ecr
from hal.edc import EdcEvent, EdcReply, EdcTerminal
from simulators.edc import EdcSim
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def ask(terminal: EdcTerminal, events: queue.Queue[EdcEvent], request: ecr.Message) -> EdcReply:
    terminal.submit(request)
    reply: EdcReply = wait_for(events, lambda e: isinstance(e, EdcReply), 10)
    return reply


def test_cli_terminal_answers_as_scripted(tmp_path: Path) -> None:
    state = tmp_path / "batch.json"
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", "edc", "--state", str(state),
                             "--script", "decline:51", "--script", "approve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        path = line.split(" on ", 1)[1].split(",", 1)[0]
        events: queue.Queue[EdcEvent] = queue.Queue()
        terminal = EdcTerminal(path, events.put, ack_timeout_s=0.5, response_timeout_s=5)
        terminal.start()
        try:
            declined = ask(terminal, events, ecr.Message(ecr.SALE, 25_000, "REF1"))
            assert declined.answer is not None and declined.answer.response == "51"
            approved = ask(terminal, events, ecr.Message(ecr.SALE, 25_000, "REF2"))
            assert approved.answer is not None and approved.answer.approved and approved.answer.approval
            void = ask(terminal, events, ecr.Message(ecr.VOID, 25_000, "REF3", approved.answer.invoice))
            assert void.answer is not None and void.answer.approved
            last = ask(terminal, events, ecr.Message(ecr.INQUIRY))
            assert last.answer is not None and last.answer.ecr_ref == "REF3"
        finally:
            terminal.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "still charged: Rp 0 over 1 sales" in out
    assert state.exists()


def test_unknown_behaviour_is_one_clear_error() -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "sim", "edc", "--script", "explode"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "unknown behaviour" in result.stderr


def test_power_cycle_keeps_the_batch_and_answers_the_inquiry(tmp_path: Path) -> None:
    sim = EdcSim(tmp_path / "batch.json")
    sim.start()
    events: queue.Queue[EdcEvent] = queue.Queue()
    terminal = EdcTerminal(sim.path, events.put, ack_timeout_s=0.3, response_timeout_s=1.0)
    terminal.start()
    try:
        sim.script("power_cycle:0.5")
        lost = ask(terminal, events, ecr.Message(ecr.SALE, 40_000, "LOST1"))
        assert lost.outcome == "timeout" and lost.answer is None
        last = ask(terminal, events, ecr.Message(ecr.INQUIRY))
        assert last.answer is not None and last.answer.ecr_ref == "LOST1" and last.answer.approved
        refund = ask(terminal, events, ecr.Message(ecr.REFUND, 15_000, "R1", last.answer.invoice))
        assert refund.answer is not None and refund.answer.approved
        too_much = ask(terminal, events, ecr.Message(ecr.REFUND, 30_000, "R2", last.answer.invoice))
        assert too_much.answer is not None and not too_much.answer.approved
    finally:
        terminal.close()
        sim.close()
    # a new terminal process on the same batch file still knows what it charged
    again = EdcSim(tmp_path / "batch.json")
    try:
        assert again.net_charged() == {"LOST1": 25_000}
    finally:
        again.close()
