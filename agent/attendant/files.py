"""Where the attendant's page (static files plus the bundled MQTT.js and zxing-cpp WebAssembly)
is found: the installed copy on a station, or the checkout during development."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLE = Path("vendor") / "attendant-vendor.js"
WASM = Path("vendor") / "zxing_reader.wasm"
INSTALLED = Path("/opt/spbu/attendant")


class AttendantPageMissing(RuntimeError):
    pass


def attendant_dir() -> Path:
    candidates = [Path(os.environ["SPBU_ATTENDANT_DIR"])] if os.environ.get("SPBU_ATTENDANT_DIR") else []
    candidates += [Path(__file__).resolve().parent.parent.parent / "attendant" / "www", INSTALLED]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in (Path("index.html"), BUNDLE, WASM)):
            return candidate
    raise AttendantPageMissing("the attendant's page is not built (MQTT.js and zxing-wasm come from npm): "
                               "run make dashboard")
