"""Headless Chromium for the page tests and benchmarks: Debian's binary, driven by Playwright,
HTTP/2 on (as a phone's or tablet's browser) and QUIC off (loopback has no UDP listener)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def skip_reason(built_page: Callable[[], Path], missing: type[Exception]) -> str | None:
    """Why a browser test cannot run here, or None: Playwright, Chromium and the built page
    (`built_page` raises `missing`, with the make target to run, when the page is not built)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is missing (make test installs it as root: apt-get install chromium)"
    try:
        built_page()
    except missing as exc:
        return str(exc)
    return None
