"""Which scanner driver a pump's `scanner` setting names:

  /dev/ttyACM0, /dev/spbu-scanner1   serial scanner (USB CDC or RS-232)
  hid:/dev/input/by-id/...-kbd       keyboard-mode scanner through evdev, grabbed
  camera:picamera                    Pi camera (picamera2)
  camera:/dev/video0                 USB webcam through OpenCV V4L2
  camera:/path/to/video.mp4 or dir   a video file or a folder of images (tests, demos)
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hal.scanner import ScannerEvent, SerialScanner


class Scanner(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...
    def last_beat(self) -> float: ...


# Optional scanner kinds and the Python modules (and the package's extra) they need.
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "hid:": (("evdev",), "hid"),
    "camera:": (("cv2", "zxingcpp", "numpy"), "camera"),
}


class ScannerUnavailable(Exception):
    """A configured scanner kind whose driver's modules are not installed."""


def missing_extra(setting: str) -> str | None:
    """What to install for this scanner setting, or None when its driver can load."""
    for prefix, (modules, extra) in EXTRAS.items():
        if setting.startswith(prefix):
            absent = [m for m in modules if importlib.util.find_spec(m) is None]
            if absent:
                return (f"{setting}: needs the Python module {', '.join(absent)}: install the [{extra}] extra "
                        f"(/opt/spbu/venv/bin/pip install 'spbu-edge[{extra}]')")
    if setting == "camera:picamera" and importlib.util.find_spec("picamera2") is None:
        return f"{setting}: needs picamera2: sudo apt-get install python3-picamera2 (and a venv with system packages)"
    return None


class AbsentScanner:
    """Stands in for a scanner whose driver cannot load: the pump still takes scans from
    the attendant's app, the rest of the station runs, and the reason is logged."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def last_beat(self) -> float:
        return time.monotonic()  # nothing runs, so nothing can hang


def open_scanner(setting: str, on_event: Callable[[ScannerEvent], None], baudrate: int = 9600,
                 suffix: bytes = b"") -> Scanner:
    """The driver for a setting; ScannerUnavailable when its optional modules are missing."""
    missing = missing_extra(setting)
    if missing:
        raise ScannerUnavailable(missing)
    if setting.startswith("hid:"):
        from hal.hid_scanner import HidScanner

        return HidScanner(setting[len("hid:"):], on_event)
    if setting.startswith("camera:"):
        from hal.camera import CameraScanner, FrameSource, ImageFolderSource, OpenCvSource, PiCameraSource

        where = setting[len("camera:"):]

        def open_source() -> FrameSource:
            if where == "picamera":
                return PiCameraSource()
            if Path(where).is_dir():
                return ImageFolderSource([Path(where)])
            return OpenCvSource(where)

        return CameraScanner(open_source, on_event)
    return SerialScanner(setting, on_event, baudrate=baudrate, suffix=suffix)
