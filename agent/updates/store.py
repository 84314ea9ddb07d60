"""Software releases side by side on the Pi, each complete or not there at all.

    <root>/<version>/manifest.json    the signed release manifest
    <root>/<version>/files/...        the carried files (wheels/, deploy/, firmware/)
    <root>/<version>/venv/            its own venv, built offline from the carried wheels
    <root>/<version>/COMPLETE         written last (fsynced): sha256 of manifest.json
    <root>/current -> <version>       swapped by rename(2) (agent/updates/switch.py)

A venv is not relocatable (its scripts name their interpreter by path), so a release is
built in its final directory and only the COMPLETE marker makes it one: a power cut while
staging leaves a directory without it, which the next boot deletes. Nothing ever points
`current` at a directory without COMPLETE.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from agent.allowlist.chunks import ChunkStore
from agent.durable import atomic_write, fsync_dir
from agent.killpoints import killpoint
from agent.trust.root import TrustError
from agent.updates import manifest as rm

log = logging.getLogger(__name__)
COMPLETE = "COMPLETE"
VENV_TIMEOUT_S = 300.0
# Killpoints of the install path, in order (the crash campaign walks them all).
STAGE_POINTS = ("stage_dir_created", "stage_files_written", "stage_venv_built", "stage_complete")


class ReleaseError(RuntimeError):
    """Staging failed; the message says at which step. Nothing half-made is left in use."""


def is_complete(directory: Path) -> bool:
    """COMPLETE is there and names the manifest beside it (a torn copy is not a release)."""
    try:
        marker = (directory / COMPLETE).read_text().strip()
        manifest = (directory / "manifest.json").read_bytes()
    except OSError:
        return False
    return marker == hashlib.sha256(manifest).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def build_venv(release: Path, version: str, base_site: Path | None = None, timeout_s: float = VENV_TIMEOUT_S) -> None:
    """`python -m venv` plus `pip install --no-index` from the release's own wheels: offline.

    `base_site` (simulation and tests only) is a site-packages the new venv also reads,
    for the dependencies a test release does not carry as wheels; a real release carries
    every wheel (`make bundle`)."""
    venv = release / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    python = getattr(sys, "_base_executable", sys.executable)
    steps = [[python, "-m", "venv", "--without-pip", str(venv)],
             [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
              "--no-index", "--disable-pip-version-check", "--find-links", str(release / "files" / "wheels"),
              "--ignore-installed", *(["--no-deps"] if base_site else []), f"spbu-edge=={version}"]]
    for i, command in enumerate(steps):
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=timeout_s)
        except subprocess.CalledProcessError as exc:
            raise ReleaseError(f"venv: {' '.join(command[:3])} failed: {exc.stderr.decode()[-400:]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ReleaseError(f"venv: {command[2]} took over {timeout_s:.0f} s") from exc
        if i == 0 and base_site is not None:
            purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
            _write(Path(purelib) / "_spbu_base.pth", f"{base_site}\n".encode())


class ReleaseStore:
    def __init__(self, root: Path, chunks: ChunkStore, base_site: Path | None = None) -> None:
        self.root = root
        self.chunks = chunks
        self.base_site = base_site
        root.mkdir(parents=True, exist_ok=True)

    def path(self, version: str) -> Path:
        rm.parse_version(version)  # never a path from anywhere else
        return self.root / version

    def complete(self, version: str) -> bool:
        return is_complete(self.path(version))

    def manifest_raw(self, version: str) -> bytes:
        return (self.path(version) / "manifest.json").read_bytes()

    def stage(self, manifest: rm.ReleaseManifest) -> Path:
        """Lay out a fetched release and build its venv; the chunks must all be on disk."""
        final = self.path(manifest.version)
        if is_complete(final):
            return final
        current = self.root / "current"
        if current.exists() and current.resolve() == final.resolve():
            raise ReleaseError(f"release {manifest.version} is in use but incomplete")
        shutil.rmtree(final, ignore_errors=True)
        final.mkdir(parents=True)
        killpoint("stage_dir_created")
        for item in manifest.files:
            try:
                data = self.chunks.assemble(item.blob)
            except (TrustError, OSError) as exc:
                shutil.rmtree(final, ignore_errors=True)
                raise ReleaseError(f"file {item.path}: {exc}") from exc
            _write(final / "files" / item.path, data)
        _write(final / "manifest.json", manifest.raw)
        killpoint("stage_files_written")
        try:
            build_venv(final, manifest.version, self.base_site)
        except ReleaseError:
            shutil.rmtree(final, ignore_errors=True)
            raise
        killpoint("stage_venv_built")
        os.sync()  # pip does not fsync what it writes; COMPLETE must not outrun the venv's files
        fsync_dir(final)
        atomic_write(final / COMPLETE, hashlib.sha256(manifest.raw).hexdigest().encode())
        killpoint("stage_complete")
        log.info("release %s staged in %s", manifest.version, final)
        return final
