"""QR decoding for camera frames: zxing-cpp restricted to QR, plus retries spent only when
the plain call finds nothing.

An easy frame costs exactly one zxing-cpp call, the same as calling the library directly.
When that call fails, cheaper-to-likelier variants are tried in order (a crop around where
the last code was, a half-size sharpened copy for blur, contrast stretching for glare and
washed-out screens, another binarizer) until one decodes or the time budget is spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import zxingcpp

QR_ONLY = zxingcpp.barcode_formats_from_str("QRCode")  # not Micro QR, not rMQR
DEFAULT_BUDGET_MS = 30.0

Gray = np.ndarray


@dataclass(frozen=True)
class Decoded:
    text: str
    box: tuple[int, int, int, int]  # x, y, width, height in the frame's pixels
    attempt: str  # which variant decoded it: "raw" on the fast path


def raw_decode(gray: Gray) -> str | None:
    """The baseline: one zxing-cpp call, QR only, library defaults."""
    found = zxingcpp.read_barcodes(gray, formats=QR_ONLY)
    return found[0].text if found else None


def to_gray(frame: np.ndarray) -> Gray:
    if frame.ndim == 3:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    return frame


def _half(gray: Gray) -> Gray:
    return np.asarray(cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))


def _sharpen(gray: Gray) -> Gray:
    blurred = cv2.GaussianBlur(gray, (0, 0), 2.0)
    return np.asarray(cv2.addWeighted(gray, 1.8, blurred, -0.8, 0))


def _stretch(gray: Gray) -> Gray:
    lo, hi = np.percentile(gray, (2, 98))
    scaled = (gray.astype(np.float32) - lo) * (255.0 / max(1.0, float(hi - lo)))
    return np.asarray(np.clip(scaled, 0, 255), np.uint8)


_CLAHE = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))


def _clahe(gray: Gray) -> Gray:
    return np.asarray(_CLAHE.apply(cv2.medianBlur(gray, 5)))


# (name, image transform, scale of the result relative to the frame, binarizer)
_Variant = tuple[str, Callable[[Gray], Gray], float, "zxingcpp.Binarizer"]
_VARIANTS: list[_Variant] = [
    ("half_sharpen", lambda g: _sharpen(_half(g)), 0.5, zxingcpp.Binarizer.LocalAverage),
    ("half", _half, 0.5, zxingcpp.Binarizer.LocalAverage),
    ("sharpen", _sharpen, 1.0, zxingcpp.Binarizer.LocalAverage),
    ("clahe", _clahe, 1.0, zxingcpp.Binarizer.LocalAverage),
    ("half_clahe", lambda g: _clahe(_half(g)), 0.5, zxingcpp.Binarizer.LocalAverage),
    ("stretch_global", _stretch, 1.0, zxingcpp.Binarizer.GlobalHistogram),
    ("stretch", _stretch, 1.0, zxingcpp.Binarizer.LocalAverage),
]


class QrPipeline:
    """Stateful only in where the last code was seen (the customer holds the phone still)."""

    def __init__(self, budget_ms: float = DEFAULT_BUDGET_MS) -> None:
        self.budget_s = budget_ms / 1000.0
        self.last_box: tuple[int, int, int, int] | None = None

    def decode(self, frame: np.ndarray) -> Decoded | None:
        started = time.perf_counter()
        gray = to_gray(frame)
        hit = self._read(gray, "raw", 1.0, zxingcpp.Binarizer.LocalAverage, (0, 0))
        if hit is not None:
            return hit
        if self.last_box is not None:
            crop, origin = self._crop_around_last(gray)
            hit = self._read(_stretch(crop), "crop_last", 1.0, zxingcpp.Binarizer.LocalAverage, origin)
            if hit is not None:
                return hit
        for name, transform, scale, binarizer in _VARIANTS:
            if time.perf_counter() - started > self.budget_s:
                break
            hit = self._read(transform(gray), name, scale, binarizer, (0, 0))
            if hit is not None:
                return hit
        return None

    def _crop_around_last(self, gray: Gray) -> tuple[Gray, tuple[int, int]]:
        assert self.last_box is not None
        x, y, w, h = self.last_box
        margin = max(w, h) // 3
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = min(gray.shape[1], x + w + margin), min(gray.shape[0], y + h + margin)
        return gray[y0:y1, x0:x1], (x0, y0)

    def _read(self, image: Gray, name: str, scale: float, binarizer: zxingcpp.Binarizer,
              origin: tuple[int, int]) -> Decoded | None:
        if image.size == 0:
            return None
        found = zxingcpp.read_barcodes(image, formats=QR_ONLY, binarizer=binarizer)
        if not found:
            return None
        pos = found[0].position
        xs = [p.x for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
        ys = [p.y for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
        box = (origin[0] + int(min(xs) / scale), origin[1] + int(min(ys) / scale),
               int((max(xs) - min(xs)) / scale), int((max(ys) - min(ys)) / scale))
        self.last_box = box
        return Decoded(found[0].text, box, name)
