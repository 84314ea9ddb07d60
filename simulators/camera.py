"""Camera simulator: renders QR texts into frames a pump camera would see (a phone screen
held at an angle, blur, glare, moiré, low contrast, creased paper), graded by difficulty.
Usable as a frame source (hal.camera.FrameSource) and by the camera benchmark."""

from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np
import segno

WIDTH, HEIGHT = 640, 480
LEVELS = 5  # 0 clean ... 4 hard

Frame = np.ndarray  # 8-bit grayscale, HEIGHT x WIDTH


def qr_matrix(text: str) -> np.ndarray:
    """Modules as 0 (dark) / 255 (light) with the 4-module quiet zone."""
    code = segno.make_qr(text, error="m")
    rows = [list(r) for r in code.matrix_iter(scale=1, border=4)]
    return np.where(np.array(rows, dtype=np.uint8) > 0, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Scene:
    text: str
    level: int
    medium: str  # "phone", "phone_dark" (dark mode: light modules on black) or "paper"
    seed: int


def render(scene: Scene) -> Frame:
    rng = random.Random(scene.seed)
    level = scene.level
    modules = qr_matrix(scene.text)
    size = rng.randint(300 - 30 * level, 340 - 25 * level)
    code = cv2.resize(modules, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    if scene.medium == "phone_dark":
        code = 255 - code
    if scene.medium.startswith("phone"):
        # A backlit screen: pixel grid and a bezel around the code.
        code = code * 0.85 + 25
        pad = 24
        card = np.full((size + 2 * pad, size + 2 * pad), 235.0, np.float32)
        card[pad:pad + size, pad:pad + size] = code
        bezel = np.full((card.shape[0] + 40, card.shape[1] + 40), 20.0, np.float32)
        bezel[20:-20, 20:-20] = card
        card = bezel
    else:
        card = code * 0.8 + 40
        card = _folds(card, rng, level)
    background = _background(rng)
    frame = _place(card, background, rng, level)
    if scene.medium.startswith("phone") and level >= 2:
        frame = _moire(frame, rng, level)
    frame = _glare(frame, rng, level)
    frame = _contrast(frame, rng, level)
    frame = _blur(frame, rng, level)
    noise = np.asarray(np.random.default_rng(scene.seed).normal(0, 2 + 2 * level, frame.shape), np.float32)
    return np.asarray(np.clip(frame + noise, 0, 255), dtype=np.uint8)


def _background(rng: random.Random) -> np.ndarray:
    base = rng.uniform(60, 140)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    return np.asarray(base + 30 * np.sin(x / rng.uniform(40, 90)) * np.cos(y / rng.uniform(50, 110)), np.float32)


def _place(card: np.ndarray, background: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    h, w = card.shape
    tilt = 0.04 + 0.07 * level  # perspective: how far corners move, as a share of the size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = np.array([[rng.uniform(-tilt, tilt) * w, rng.uniform(-tilt, tilt) * h] for _ in range(4)], np.float32)
    angle = np.radians(rng.uniform(-15 - 8 * level, 15 + 8 * level))
    centre = np.array([rng.uniform(0.4, 0.6) * WIDTH, rng.uniform(0.4, 0.6) * HEIGHT], np.float32)
    scale = min(WIDTH, HEIGHT) * rng.uniform(0.6, 0.85) / max(w, h)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    dst = np.array([(rot @ ((p + j - [w / 2, h / 2]) * scale)) + centre for p, j in zip(src, jitter, strict=True)],
                   np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(card, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    mask = cv2.warpPerspective(np.ones_like(card), matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
    return np.asarray(warped * mask + background * (1 - mask), np.float32)


def _folds(card: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    h, w = card.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(level):
        if rng.random() < 0.5:
            pos, axis = rng.uniform(0.3, 0.7) * w, x
        else:
            pos, axis = rng.uniform(0.3, 0.7) * h, y
        # A crease: a dark line and paper on one side turned slightly from the light.
        card = card * np.where(axis > pos, rng.uniform(0.8, 0.95), 1.0)
        card = card - 45 * np.exp(-((axis - pos) ** 2) / 6.0)
    return card


def _moire(frame: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    period, theta = rng.uniform(2.5, 4.0), rng.uniform(0, np.pi)
    wave = np.sin((x * np.cos(theta) + y * np.sin(theta)) * 2 * np.pi / period)
    return np.asarray(frame * (1 - 0.04 * level * (0.5 + 0.5 * wave)), np.float32)


def _glare(frame: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    if level == 0:
        return frame
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    cx, cy = rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT
    radius = rng.uniform(40, 60 + 20 * level)
    spot = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
    return np.asarray(frame + spot * (40 + 35 * level), np.float32)


def _contrast(frame: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    keep = 1.0 - 0.17 * level * rng.uniform(0.7, 1.0)  # level 4 keeps ~35% of the range
    mid = rng.uniform(100, 150)
    return (frame - 128) * keep + mid


def _blur(frame: np.ndarray, rng: random.Random, level: int) -> np.ndarray:
    if level == 0:
        return frame
    sigma = 0.4 * level * rng.uniform(0.7, 1.2)
    frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    if level >= 3 and rng.random() < 0.5:  # hand shake: motion blur
        length = 2 + level
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        frame = cv2.filter2D(frame, -1, kernel)
    return np.asarray(frame, np.float32)


def scenes(texts: list[str], per_level: int, seed: int = 1) -> list[Scene]:
    """`per_level` frames at each difficulty level: phone, paper, every sixth a dark-mode phone."""
    out = []
    for level in range(LEVELS):
        for i in range(per_level):
            out.append(Scene(texts[(level * per_level + i) % len(texts)], level,
                             "phone_dark" if i % 6 == 4 else "phone" if i % 2 == 0 else "paper",
                             seed * 100_000 + level * 1000 + i))
    return out


class SimulatedCamera:
    """A frame source: shows each text for `frames_each` frames, then an empty scene, at a
    given difficulty; `dark` dims every frame (a covered lens); `lose_after` frames then
    stops delivering (an unplugged USB camera)."""

    def __init__(self, texts: list[str], level: int = 1, frames_each: int = 3, seed: int = 1,
                 dark: bool = False, lose_after: int | None = None) -> None:
        self.texts = texts
        self.level = level
        self.frames_each = frames_each
        self.seed = seed
        self.dark = dark
        self.lose_after = lose_after
        self.count = 0

    def read(self) -> np.ndarray | None:
        if self.lose_after is not None and self.count >= self.lose_after:
            return None
        index, _ = divmod(self.count, self.frames_each + 1)
        self.count += 1
        if self.dark:
            return np.full((HEIGHT, WIDTH), 6, np.uint8)
        if (self.count % (self.frames_each + 1)) == 0 or index >= len(self.texts):
            return np.asarray(np.clip(_background(random.Random(self.count)), 0, 255), np.uint8)
        return render(Scene(self.texts[index], self.level, "phone" if index % 2 == 0 else "paper",
                            self.seed * 7919 + self.count))

    def close(self) -> None:
        pass
