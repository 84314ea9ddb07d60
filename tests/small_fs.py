"""A small filesystem made by the test itself: a tmpfs when the test may mount, else an
ext4 image on a loop device; a clear skip only when neither is possible."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)


@contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[Path]:
    """Mount a filesystem of size_mb at `where` (created), yield it, unmount it."""
    if os.geteuid() != 0:
        pytest.skip("a small filesystem needs mount (root): run as root, as CI does")
    where.mkdir(parents=True, exist_ok=True)
    tried = []
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where))
    image = where.with_suffix(".img")
    if mounted.returncode != 0:
        tried.append(f"tmpfs: {mounted.stderr.strip()}")
        if shutil.which("mkfs.ext4") is None:
            pytest.skip(f"cannot mount a small filesystem ({'; '.join(tried)}) and no mkfs.ext4 for a loop image")
        with open(image, "wb") as handle:
            handle.truncate(size_mb * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        mounted = _run("mount", "-o", "loop", str(image), str(where)) if made.returncode == 0 else made
        if mounted.returncode != 0:
            tried.append(f"loop ext4: {mounted.stderr.strip()}")
            image.unlink(missing_ok=True)
            pytest.skip(f"cannot mount a small filesystem here: {'; '.join(tried)}")
    try:
        yield where
    finally:
        _run("umount", "-l", str(where))
        image.unlink(missing_ok=True)


def fill_up(path: Path, chunk: int = 64 * 1024) -> int:
    """Write zeros to `path` until the filesystem is full; the bytes written."""
    written = 0
    block = b"\0" * chunk
    with open(path, "wb", buffering=0) as handle:
        while True:
            try:
                n = handle.write(block)
            except OSError:
                if chunk > 512:
                    chunk //= 8
                    block = block[:chunk]
                    continue
                break
            if not n:
                break
            written += n
        with suppress(OSError):
            os.fsync(handle.fileno())
    return written
