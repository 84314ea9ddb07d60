"""Which scanner driver a pump's `scanner` setting names:

  /dev/ttyACM0, /dev/spbu-scanner1   serial scanner (USB CDC or RS-232)
  hid:/dev/input/by-id/...-kbd       keyboard-mode scanner through evdev, grabbed
  camera:picamera                    Pi camera (picamera2)
  camera:/dev/video0                 USB webcam through OpenCV V4L2
  camera:/path/to/video.mp4 or dir   a video file or a folder of images (tests, demos)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hal.scanner import ScannerEvent, SerialScanner


class Scanner(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...
    def last_beat(self) -> float: ...


def open_scanner(setting: str, on_event: Callable[[ScannerEvent], None], baudrate: int = 9600,
                 suffix: bytes = b"") -> Scanner:
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
