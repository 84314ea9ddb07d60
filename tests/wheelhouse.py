"""An offline bundle for deploy/install.sh --bundle, made from this machine alone: the
project's own wheel (pip wheel) and the wheels of its installed dependencies, packed again
from the files pip installed (RECORD) with a fresh RECORD. This is what lets the install
test run install.sh's real venv path without a package index."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

DROP = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: tuple[str, ...]) -> list[str]:
    """Installed distributions `root[extras]` needs here, root excluded."""
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in md.requires(name) or []:
            req = Requirement(text)
            base = {str(k): str(v) for k, v in default_environment().items()}
            envs: list[dict[str, str]] = [{**base, "extra": e} for e in (*wanted, "")]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = _norm(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, tuple(req.extras)))
    return sorted(seen)


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(name: str, out: Path) -> Path:
    dist = md.distribution(name)
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    parts = [t.split("-") for t in tags] or [["py3", "none", "any"]]
    # a compressed tag set, as wheel files name it: py2.py3-none-any
    tag = "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))
    stem = f"{re.sub(r'[-.]+', '_', dist.metadata['Name'])}-{dist.version}"
    target = out / f"{stem}-{tag}.whl"
    records: list[str] = []
    info_dir = ""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as wheel:
        for file in dist.files or []:
            arcname = str(file)
            if arcname.startswith("..") or "__pycache__" in arcname or arcname.endswith(".pyc"):
                continue  # scripts (pip makes them again) and bytecode
            if ".dist-info/" in arcname:
                info_dir = arcname.split("/", 1)[0]
                if arcname.rsplit("/", 1)[-1] in DROP:
                    continue
            path = Path(str(file.locate()))
            if not path.is_file():
                continue
            data = path.read_bytes()
            wheel.writestr(arcname, data)
            records.append(f"{arcname},{_digest(data)},{len(data)}")
        record_name = f"{info_dir}/RECORD"
        wheel.writestr(record_name, "\n".join([*records, f"{record_name},,"]) + "\n")
    return target


def build(project: Path, out: Path, extras: tuple[str, ...] = ("pi",)) -> list[Path]:
    """A bundle directory as `make bundle` makes it (wheels only), from this machine."""
    out.mkdir(parents=True, exist_ok=True)
    # From a clean copy: setuptools' build/ directory in a checkout keeps modules that were
    # moved or deleted since, and would pack them too.
    source = out / "source"
    shutil.copytree(project, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", ".*_cache", ".hypothesis", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
                            str(source)], capture_output=True, text=True, timeout=300, check=False)
    shutil.rmtree(source, ignore_errors=True)
    if built.returncode != 0:
        raise RuntimeError(f"pip wheel of the project failed: {built.stderr[-2000:]}")
    return [repack(name, out) for name in closure("spbu-edge", extras)]
