"""MicroPython's time.ticks_ms / ticks_diff / sleep_ms for firmware code running on CPython
(the simulator and the direct-GPIO backend)."""

from __future__ import annotations

import time


class CPythonTicks:
    @staticmethod
    def ticks_ms() -> int:
        return int(time.monotonic() * 1000)

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b

    @staticmethod
    def sleep_ms(ms: int) -> None:
        time.sleep(ms / 1000)
