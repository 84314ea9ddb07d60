"""Serial QR scanner driver (USB CDC or RS-232): lines in, scan events out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hal.scanner_proto import MAX_LEN, ScanLineDecoder
from hal.serial_link import SerialPortThread


@dataclass(frozen=True)
class ScanRead:
    text: str
    symbology: str


@dataclass(frozen=True)
class ScanError:
    reason: str


@dataclass(frozen=True)
class ScannerState:
    connected: bool


@dataclass(frozen=True)
class ScannerNotice:
    """A condition the attendant should fix, from scanners that can tell (cameras):
    "camera_lost", "too_dark", or "ok" once it clears."""

    reason: str


ScannerEvent = ScanRead | ScanError | ScannerState | ScannerNotice


class SerialScanner:
    def __init__(
        self,
        port: str,
        on_event: Callable[[ScannerEvent], None],
        baudrate: int = 9600,
        suffix: bytes = b"",
        max_len: int = MAX_LEN,
    ) -> None:
        self._decoder = ScanLineDecoder(max_len=max_len, suffix=suffix)
        self._on_event = on_event
        self._port = SerialPortThread(
            port, self._bytes, lambda up: on_event(ScannerState(up)), baudrate=baudrate,
            name=f"scanner:{port}",
            # A code read while the agent was down is stale: it must not authorise a pump
            # minutes later when nobody is waiting at it.
            flush_on_open=True,
        )

    def start(self) -> None:
        self._port.start()

    def close(self) -> None:
        self._port.close()

    def last_beat(self) -> float:
        return self._port.last_loop

    def send(self, command: bytes) -> bool:
        """A command to the scanner (its good-read or bad-read beep); False if it is unplugged."""
        return self._port.write(command)

    def _bytes(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if event[0] == "scan":
                self._on_event(ScanRead(event[1], event[2]))
            else:
                self._on_event(ScanError(event[1]))
