"""Real releases for the update tests: this project's wheel, built once per session, and
variants of it (another version number, an agent that exits at start, firmware that does
not say hello), rewritten inside the wheel so each costs milliseconds, not a build."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from simulators.flash import FIRMWARE_FILES

ROOT = Path(__file__).resolve().parent.parent
BASE_VERSION = "0.1.0"
# The venvs of test releases read their dependencies from the test environment's own
# site-packages (agent/updates/store.build_venv's base_site); a field release carries wheels.
BASE_SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


def build_base_wheel(out: Path) -> Path:
    """`pip wheel` of this checkout (sources copied, so the build leaves no trace here)."""
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("agent", "hal", "hq", "simulators"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), f"./{src.name}"],
                   cwd=out, check=True, capture_output=True, timeout=300)
    return next(out.glob(f"spbu_edge-{BASE_VERSION}-*.whl"))


def wheel_variant(base: Path, out: Path, version: str,
                  patches: dict[str, Callable[[str], str]] | None = None) -> Path:
    """The base wheel as `version`, with source files patched; RECORD rewritten to match."""
    patches = dict(patches or {})
    patches.setdefault("agent/__init__.py", lambda text: text.replace(f'"{BASE_VERSION}"', f'"{version}"'))
    old_info, new_info = f"spbu_edge-{BASE_VERSION}.dist-info", f"spbu_edge-{version}.dist-info"
    target = out / base.name.replace(f"-{BASE_VERSION}-", f"-{version}-")
    records: list[list[str]] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            name = item.filename.replace(old_info, new_info)
            if name.endswith("/RECORD"):
                continue
            data = src.read(item)
            if name in patches:
                data = patches[name](data.decode()).encode()
            if name.endswith("/METADATA"):
                data = data.replace(f"Version: {BASE_VERSION}".encode(), f"Version: {version}".encode())
            dst.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append([name, f"sha256={digest}", str(len(data))])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([*records, [f"{new_info}/RECORD", "", ""]])
        dst.writestr(f"{new_info}/RECORD", text.getvalue())
    target.write_bytes(buffer.getvalue())
    return target


def firmware_files(version: int, say_hello: bool = True, into: Path | None = None) -> dict[str, Path]:
    """The relay-board firmware as laid out on the board, at `version`; without hello if asked."""
    assert into is not None
    out: dict[str, Path] = {}
    for rel in FIRMWARE_FILES:
        text = (ROOT / rel).read_text()
        if not text:
            continue  # empty package markers are on every board already
        if rel.endswith("board_core.py"):
            text = text.replace("FIRMWARE_VERSION = 1", f"FIRMWARE_VERSION = {version}")
            if not say_hello:
                text = text.replace("self.link.send(rp.BOARD_HELLO", "0 and self.link.send(rp.BOARD_HELLO")
                assert "0 and self.link.send(rp.BOARD_HELLO" in text
        path = into / f"fw{version}{'' if say_hello else '-mute'}" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[rel] = path
    return out
