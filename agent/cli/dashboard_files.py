"""Where the manager's dashboard (static files plus the bundled MQTT and signing library)
is found: the installed copy on a station, or the checkout during development."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLE = Path("vendor") / "spbu-vendor.js"
INSTALLED = Path("/opt/spbu/dashboard")


class DashboardMissing(RuntimeError):
    pass


def dashboard_dir() -> Path:
    candidates = [Path(os.environ["SPBU_DASHBOARD_DIR"])] if os.environ.get("SPBU_DASHBOARD_DIR") else []
    candidates += [Path(__file__).resolve().parents[2] / "dashboard" / "www", INSTALLED]
    for candidate in candidates:
        if (candidate / "index.html").is_file() and (candidate / BUNDLE).is_file():
            return candidate
    raise DashboardMissing("the dashboard is not built (its MQTT library comes from npm): run make dashboard")
