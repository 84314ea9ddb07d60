"""hal/firmware/MANIFEST lists exactly what the relay board imports: every module the
firmware's entry point reaches in this tree, each package's __init__, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "hal" / "firmware" / "MANIFEST"
# The subset of DESIGN.md, plus `os` for the firmware update's own file writes (every port has it).
BOARD_MODULES = {"machine", "micropython", "time", "struct", "binascii", "collections", "os"}


def manifest() -> dict[str, str]:
    rows = [line.split() for line in MANIFEST.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all(len(row) == 2 for row in rows)
    return {device: source for device, source in rows}


def module_file(name: str) -> Path | None:
    base = ROOT / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def closure(entry: Path) -> tuple[set[Path], set[str]]:
    files, outside, todo = {entry}, set(), [entry]
    while todo:
        for name in imports_of(todo.pop()):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                prefix = ".".join(parts[:depth])
                path = module_file(prefix)
                if path is None:
                    if depth == 1:
                        outside.add(prefix)
                    continue
                if path not in files:
                    files.add(path)
                    todo.append(path)
    return files, outside


def test_manifest_is_the_firmware_import_closure() -> None:
    listed = manifest()
    assert listed["main.py"] == "hal/firmware/pico_main.py"
    files, outside = closure(ROOT / listed["main.py"])
    assert {str(f.relative_to(ROOT)) for f in files} == set(listed.values())
    assert outside <= BOARD_MODULES, outside - BOARD_MODULES


def test_board_paths_mirror_the_package_paths() -> None:
    for device, source in manifest().items():
        assert device == source or device == "main.py"
        assert (ROOT / source).is_file()
