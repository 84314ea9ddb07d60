"""The architecture's import contracts (pyproject.toml [tool.importlinter]) hold on the
tree, and each one fails when a forbidden import is planted in a copy of it; the
firmware's MicroPython type check fails on a module the board does not have."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("agent", "hal", "hq", "simulators")


def copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(where: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter is not installed (make venv installs it)")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(where)})


def plant(path: Path, line: str) -> None:
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(text.replace(marker, marker + line + "\n", 1) if marker in text else line + "\n" + text)


def test_contracts_hold_on_the_tree(tmp_path: Path) -> None:
    result = lint_imports(copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("agent/station.py", "import hq.collector", "The station runtime never imports"),
    ("agent/eligibility.py", "import simulators.dispenser", "The station runtime never imports"),
    ("agent/journal.py", "import agent.cli.demo", "The station runtime never imports"),
    ("hal/relay_proto.py", "import agent.domain", "hal/ owns the hardware"),
    ("agent/domain.py", "import agent.station", "No import cycles inside agent/"),
])
def test_a_planted_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str,
                                                        contract: str) -> None:
    tree = copy_tree(tmp_path)
    plant(tree / module, line)
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_firmware_type_check_refuses_what_micropython_lacks(tmp_path: Path) -> None:
    stubs = ROOT / ".venv" / "mpy-stubs"
    if not (stubs / "machine.pyi").exists():
        pytest.skip("MicroPython stubs are not installed (make typecheck installs them)")
    tree = copy_tree(tmp_path)
    shutil.copy(ROOT / "mypy-micropython.ini", tree)
    (tree / ".venv").mkdir()
    (tree / ".venv" / "mpy-stubs").symlink_to(stubs)
    command = [sys.executable, "-m", "mypy", "--config-file", "mypy-micropython.ini", "--no-incremental"]
    clean = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout
    plant(tree / "hal" / "firmware" / "board_core.py", "import dataclasses")
    planted = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=300)
    assert planted.returncode != 0
    assert "dataclasses" in planted.stdout
