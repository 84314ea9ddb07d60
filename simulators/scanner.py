"""Serial QR scanner simulator: each scan is written as `]Q1<text>` plus the suffix."""

from __future__ import annotations

from simulators.pty_device import PtyDevice


class ScannerSim:
    def __init__(self, suffix: bytes = b"\r\n", aim_prefix: bool = True) -> None:
        self.device = PtyDevice()
        self.suffix = suffix
        self.aim_prefix = aim_prefix

    @property
    def path(self) -> str:
        return self.device.path

    def scan(self, text: str) -> None:
        prefix = b"]Q1" if self.aim_prefix else b""
        self.device.write(prefix + text.encode("ascii", "replace") + self.suffix)

    def close(self) -> None:
        self.device.close()
