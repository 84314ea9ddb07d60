"""Serial QR scanner simulator: each scan is written as `]Q1<text>` plus the suffix, as a
real scanner types it: optionally in small USB-sized chunks, with line noise between
scans, and on a stable symlink that survives being unplugged and plugged back."""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

from simulators.pty_device import PtyDevice, SerialDevice


class ScannerSim:
    def __init__(self, suffix: bytes = b"\r\n", aim_prefix: bool = True, chunk: int = 0,
                 noise: float = 0.0, link: Path | None = None, port: str | None = None,
                 seed: int = 1) -> None:
        self.suffix = suffix
        self.aim_prefix = aim_prefix
        self.chunk = chunk  # bytes per write; 0 writes each scan at once
        self.noise = noise  # chance per scan of a garbage line first (a bad read, EMI)
        self.link = link
        self._port = port
        self._rng = random.Random(seed)
        self.device: PtyDevice | SerialDevice = self._open()

    def _open(self) -> PtyDevice | SerialDevice:
        device: PtyDevice | SerialDevice = SerialDevice(self._port) if self._port else PtyDevice()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(device.path)
        return device

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.device.path

    def scan(self, text: str) -> None:
        if self.noise and self._rng.random() < self.noise:
            self._write(bytes(self._rng.choice([0x00, 0x07, 0x1B, 0xFF, 0x80]) for _ in range(5)) + self.suffix)
        prefix = b"]Q1" if self.aim_prefix else b""
        self._write(prefix + text.encode("ascii", "replace") + self.suffix)

    def _write(self, data: bytes) -> None:
        if not self.chunk:
            self.device.write(data)
            return
        for i in range(0, len(data), self.chunk):
            self.device.write(data[i : i + self.chunk])
            time.sleep(0.002)  # USB full-speed frames arrive about a millisecond apart

    def unplug(self) -> None:
        """The USB cable is pulled: the device node goes away."""
        self.device.close()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def replug(self) -> None:
        """Plugged back: a new device node, the same (udev) name."""
        self.device = self._open()

    def close(self) -> None:
        self.unplug()
