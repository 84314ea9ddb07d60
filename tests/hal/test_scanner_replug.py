"""The serial scanner driver against a simulated scanner on a pseudo-terminal behind a
stable name: chunked USB writes, line noise, and a cable pulled and plugged back."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest

from hal.scanner import ScanError, ScannerState, ScanRead, SerialScanner
from simulators.scanner import ScannerSim
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def test_unplug_and_replug_recovers_without_restart(tmp_path: Path) -> None:
    sim = ScannerSim(link=tmp_path / "spbu-scanner1", chunk=7, noise=1.0)
    events: queue.Queue[Any] = queue.Queue()
    scanner = SerialScanner(str(tmp_path / "spbu-scanner1"), events.put, suffix=b"\r\n")
    scanner.start()
    try:
        wait_for(events, lambda e: e == ScannerState(True))
        sim.scan("SPBU2:FIRST")
        assert wait_for(events, lambda e: isinstance(e, ScanError | ScanRead)) == ScanError("not_text")
        assert wait_for(events, lambda e: isinstance(e, ScanRead)) == ScanRead("SPBU2:FIRST", "]Q1")
        sim.unplug()
        wait_for(events, lambda e: e == ScannerState(False))
        sim.noise = 0.0
        sim.replug()
        wait_for(events, lambda e: e == ScannerState(True), timeout_s=10)
        sim.scan("SPBU2:AFTER REPLUG")
        assert wait_for(events, lambda e: isinstance(e, ScanRead)).text == "SPBU2:AFTER REPLUG"
    finally:
        scanner.close()
        sim.close()


def test_sim_scanner_command_types_stdin_lines(tmp_path: Path) -> None:
    import subprocess
    import sys

    link = tmp_path / "scanner"
    proc = subprocess.Popen([sys.executable, "-m", "agent", "sim", "scanner", "--link", str(link), "--suffix", "cr",
                             "--chunk", "4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    events: queue.Queue[Any] = queue.Queue()
    scanner = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert str(link) in proc.stdout.readline()
        scanner = SerialScanner(str(link), events.put, suffix=b"\r")
        scanner.start()
        wait_for(events, lambda e: e == ScannerState(True))
        proc.stdin.write("SPBU2:TYPED BY THE SIM\n")
        proc.stdin.flush()
        assert wait_for(events, lambda e: isinstance(e, ScanRead)) == ScanRead("SPBU2:TYPED BY THE SIM", "]Q1")
    finally:
        if scanner is not None:
            scanner.close()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
