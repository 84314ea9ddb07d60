"""HID keyboard-mode scanner through Linux evdev, grabbed exclusively so its keystrokes
never reach whatever console or window has keyboard focus. Reconnects when unplugged.

evdev is in the `[pi]` extra; the import is deferred so the rest of the agent runs without it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from hal.hid_keymap import MAX_LEN, KeymapDecoder
from hal.scanner import ScanError, ScannerEvent, ScannerState, ScanRead

log = logging.getLogger(__name__)

EV_KEY = 1


class HidScanner:
    def __init__(self, device_path: str, on_event: Callable[[ScannerEvent], None], max_len: int = MAX_LEN,
                 tab_ends_scan: bool = False, reopen_s: float = 1.0, name: str = "hid-scanner") -> None:
        self.device_path = device_path
        self._on_event = on_event
        self._decoder_args = (max_len, tab_ends_scan)
        self._reopen_s = reopen_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.last_loop = time.monotonic()

    def last_beat(self) -> float:
        return self.last_loop

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        import evdev

        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            try:
                device = evdev.InputDevice(self.device_path)
                device.grab()  # exclusive: the code is not typed into a terminal as well
            except OSError as exc:
                log.debug("hid scanner %s not available: %s", self.device_path, exc)
                self._stop.wait(self._reopen_s)
                continue
            self._on_event(ScannerState(True))
            try:
                self._read(device)
            except OSError as exc:
                log.warning("hid scanner %s lost: %s", self.device_path, exc)
            finally:
                with contextlib.suppress(OSError):
                    device.ungrab()
                device.close()
            self._on_event(ScannerState(False))
            self._stop.wait(self._reopen_s)

    def _read(self, device: Any) -> None:
        # A fresh decoder per connection: half a code typed before an unplug is dropped.
        decoder = KeymapDecoder(*self._decoder_args)
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            ready, _, _ = select.select([device.fd], [], [], 1.0)  # the watchdog's heartbeat, not a poll
            if not ready:
                continue
            for event in device.read():
                if event.type != EV_KEY:
                    continue
                for kind, payload in decoder.feed(event.code, event.value):
                    self._on_event(ScanRead(payload, "") if kind == "scan" else ScanError(payload))
