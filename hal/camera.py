"""Camera QR scanner: frames from a source, decoded in the scanner's own thread (never on
the agent's event loop), at a capped frame rate, with debounce and degraded-mode events.

Frame sources: picamera2 (Pi camera), OpenCV V4L2 (USB webcam), a video file or an image
folder (tests, technicians), or anything with read()/close() such as the camera simulator.
Scans come out as hal.scanner.ScanRead, so the agent treats a camera like a serial scanner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from hal.qr_decode import QrPipeline, to_gray
from hal.scanner import ScannerEvent, ScannerNotice, ScannerState, ScanRead

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TOO_DARK_MEAN = 25.0  # mean luminance below this: lens covered, no light at night


class FrameSource(Protocol):
    def read(self) -> np.ndarray | None:
        """The next frame (gray or BGR), or None when the camera gave nothing."""

    def close(self) -> None: ...


class ImageFolderSource:
    """Image files in name order, each read once; then None."""

    def __init__(self, paths: list[Path]) -> None:
        self._files: Iterator[Path] = iter(sorted(expand_images(paths)))

    def read(self) -> np.ndarray | None:
        for path in self._files:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None:
                return np.asarray(image)
        return None

    def close(self) -> None:
        self._files = iter(())


class OpenCvSource:
    """A USB webcam through V4L2 (`/dev/video0` or an index) or a video file."""

    def __init__(self, where: str | int, width: int = 1280, height: int = 720) -> None:
        is_device = isinstance(where, int) or str(where).startswith("/dev/video")
        self._capture = cv2.VideoCapture(where, cv2.CAP_V4L2) if is_device else cv2.VideoCapture(str(where))
        if is_device:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a queue of old ones

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return np.asarray(frame) if ok and frame is not None else None

    def close(self) -> None:
        self._capture.release()


class PiCameraSource:
    """The Pi camera through picamera2 (Debian's python3-picamera2 on Raspberry Pi OS)."""

    def __init__(self, width: int = 1280, height: int = 720) -> None:
        from picamera2 import Picamera2  # type: ignore[import-not-found,unused-ignore]

        self._camera: Any = Picamera2()
        config = self._camera.create_video_configuration(main={"size": (width, height), "format": "YUV420"})
        self._camera.configure(config)
        self._camera.start()
        self._height = height

    def read(self) -> np.ndarray | None:
        try:
            yuv = self._camera.capture_array("main")
        except Exception as exc:  # picamera2 raises plain RuntimeErrors on a lost sensor
            log.warning("pi camera read failed: %s", exc)
            return None
        return np.asarray(yuv[: self._height])  # the Y plane is the gray image

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


def expand_images(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


class CameraScanner:
    """Reads frames, decodes them, emits ScanRead for a newly seen code, ScannerState on
    camera loss and return, and ScannerNotice for conditions the attendant should fix."""

    def __init__(
        self,
        open_source: Callable[[], FrameSource],
        on_event: Callable[[ScannerEvent], None],
        max_fps: float = 10.0,
        debounce_s: float = 3.0,
        lost_after: int = 10,
        dark_after: int = 15,
        reopen_s: float = 1.0,
        name: str = "camera",
    ) -> None:
        self._open_source = open_source
        self._on_event = on_event
        self._period = 1.0 / max_fps
        self._debounce_s = debounce_s
        self._lost_after = lost_after
        self._dark_after = dark_after
        self._reopen_s = reopen_s
        self._pipeline = QrPipeline(budget_ms=min(60.0, 600.0 / max_fps))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._last: tuple[str, float] = ("", 0.0)
        self._degraded = ""
        self.last_loop = time.monotonic()
        self.frames = 0

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def last_beat(self) -> float:
        return self.last_loop

    def _set_degraded(self, reason: str) -> None:
        if reason != self._degraded:
            self._degraded = reason
            self._on_event(ScannerNotice(reason or "ok"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            try:
                source = self._open_source()
            except Exception as exc:  # a missing device, a driver refusing to start
                log.warning("camera open failed: %s", exc)
                self._set_degraded("camera_lost")
                self._stop.wait(self._reopen_s)
                continue
            self._on_event(ScannerState(True))
            try:
                self._frames(source)
            finally:
                source.close()
            if not self._stop.is_set():
                self._on_event(ScannerState(False))
                self._set_degraded("camera_lost")
                self._stop.wait(self._reopen_s)

    def _frames(self, source: FrameSource) -> None:
        misses = dark = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self.last_loop = started
            frame = source.read()
            if frame is None:
                misses += 1
                if misses >= self._lost_after:
                    return  # reopen: the camera was unplugged or its driver stalled
                self._stop.wait(self._period)
                continue
            misses = 0
            self.frames += 1
            gray = to_gray(frame)
            if float(gray.mean()) < TOO_DARK_MEAN:
                dark += 1
                if dark >= self._dark_after:
                    self._set_degraded("too_dark")
            else:
                dark = 0
                self._set_degraded("")
                hit = self._pipeline.decode(gray)
                if hit is not None:
                    self._seen(hit.text, started)
            self._stop.wait(max(0.0, self._period - (time.monotonic() - started)))

    def _seen(self, text: str, now: float) -> None:
        last_text, last_at = self._last
        self._last = (text, now)
        if text == last_text and now - last_at < self._debounce_s:
            return  # the phone is still in front of the camera: one scan, not ten
        self._on_event(ScanRead(text, "]Q1"))
