"""The relay-board codec and firmware safety checks on real MicroPython (the WebAssembly
build from npm, under Node) and on CPython with the machine stubs: same source, same
checks, same results."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "micropython"

pytestmark = pytest.mark.micropython


def passed_checks(output: str) -> list[str]:
    assert not re.search(r"^FAIL ", output, re.M), output
    summary = re.search(r"^(\d+) passed, (\d+) failed$", output, re.M)
    assert summary is not None, output
    assert summary.group(2) == "0"
    names = re.findall(r"^PASS (\S+)$", output, re.M)
    assert len(names) == int(summary.group(1))
    return names


def run_cpython() -> str:
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}")
    result = subprocess.run([sys.executable, str(HERE / "safety_checks.py")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_safety_checks_on_cpython_with_stubs() -> None:
    names = passed_checks(run_cpython())
    for required in ("preset_cut_in_interrupt", "heartbeat_loss_opens_relay", "estop_opens_every_relay",
                     "relays_off_at_boot", "crc_check_value"):
        assert required in names


def test_same_checks_pass_on_real_micropython() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed, so the MicroPython WebAssembly interpreter cannot run "
                    "(make test installs it when run as root)")
    if not (HERE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, capture_output=True,
                       timeout=300)
    result = subprocess.run([node, str(HERE / "run.mjs")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^interpreter micropython \d+\.\d+", result.stdout, re.M), result.stdout
    assert passed_checks(result.stdout) == passed_checks(run_cpython())


def run_update_checks_cpython(cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}")
    result = subprocess.run([sys.executable, str(HERE / "update_checks.py")], capture_output=True, text=True,
                            env=env, timeout=60, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_firmware_update_checks_on_cpython(tmp_path: Path) -> None:
    names = passed_checks(run_update_checks_cpython(tmp_path))
    for required in ("update_done", "mute_restored", "torn_commit_restored", "update_relays_never_closed",
                     "no_authorize_while_updating", "guard_is_protected"):
        assert required in names


def test_firmware_update_checks_pass_on_real_micropython(tmp_path: Path) -> None:
    """File writes, renames, CRC-32 and the restart path on the real interpreter (its own
    in-memory filesystem)."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").exists():
        pytest.skip("Node.js or the MicroPython WebAssembly package is missing (make test installs both)")
    result = subprocess.run([node, str(HERE / "run.mjs"), "update_checks"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^interpreter micropython \d+\.\d+", result.stdout, re.M), result.stdout
    assert passed_checks(result.stdout) == passed_checks(run_update_checks_cpython(tmp_path))
