"""A serial port kept open in a reader thread: reconnects when the device is unplugged
and plugged back, hands received bytes to a callback. Shared by the serial drivers."""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import threading
import time
from collections.abc import Callable

import serial

log = logging.getLogger(__name__)


def is_pty(path: str) -> bool:
    try:
        return os.major(os.stat(path).st_rdev) in range(136, 144)  # Unix98 pty slaves
    except OSError:
        return False


class SerialPortThread:
    def __init__(
        self,
        port: str,
        on_bytes: Callable[[bytes], None],
        on_state: Callable[[bool], None],
        baudrate: int = 115200,
        read_timeout_s: float = 0.05,
        reopen_s: float = 1.0,
        on_idle: Callable[[], None] | None = None,
        name: str = "serial",
        serial_kwargs: dict[str, object] | None = None,
        flush_on_open: bool = False,
    ) -> None:
        self.port = port
        self._on_bytes = on_bytes
        self._on_state = on_state
        self._on_idle = on_idle
        self._baudrate = baudrate
        self._read_timeout_s = read_timeout_s
        self._reopen_s = reopen_s
        # A pseudo-terminal (a simulated device) has no line to set parity on, and Linux
        # ptys misbehave when asked to: parity and friends apply to real UARTs only.
        self._serial_kwargs = {} if is_pty(port) else (serial_kwargs or {})
        self._flush_on_open = flush_on_open
        self._serial: serial.Serial | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.connected = False
        self.last_loop = time.monotonic()  # the reader's heartbeat: a stuck task stops it

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._drop()

    def write(self, data: bytes) -> bool:
        with self._write_lock:
            port = self._serial
            if port is None or not data:
                return False
            try:
                port.write(data)
                return True
            except (serial.SerialException, OSError) as exc:
                log.warning("write to %s failed: %s", self.port, exc)
                return False

    def _drop(self) -> None:
        with self._write_lock:
            port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()
        if self.connected:
            self.connected = False
            self._on_state(False)

    def _open(self) -> bool:
        try:
            port = serial.Serial(
                self.port, self._baudrate, timeout=self._read_timeout_s,
                **self._serial_kwargs,  # type: ignore[arg-type]
            )
        except termios.error as exc:
            if not self._serial_kwargs:
                log.warning("cannot configure %s: %s", self.port, exc)
                return False
            # Pseudo-terminals refuse some line settings (parity) once set: a simulated
            # device needs none of them. Real UARTs and RS-485 adapters accept them.
            log.warning("%s refuses %s (%s); opening it without", self.port, self._serial_kwargs, exc)
            self._serial_kwargs = {}
            return False
        except (serial.SerialException, OSError, ValueError) as exc:
            log.debug("cannot open %s: %s", self.port, exc)
            return False
        if self._flush_on_open:
            with contextlib.suppress(serial.SerialException, OSError):
                port.reset_input_buffer()
        with self._write_lock:
            self._serial = port
        self.connected = True
        self._on_state(True)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_loop = time.monotonic()
            if self._serial is None and not self._open():
                self._stop.wait(self._reopen_s)
                continue
            port = self._serial
            assert port is not None
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                log.warning("%s lost: %s", self.port, exc)
                self._drop()
                continue
            if data:
                self._on_bytes(data)
            if self._on_idle is not None:
                self._on_idle()


class PortDriver:
    """What every device driver on a SerialPortThread shares: life cycle, link state, the
    agent's keep-alive (drivers talk to devices only while the agent's loop runs) and the
    I/O task's heartbeat for the service watchdog."""

    _port: SerialPortThread
    _alive_at: float

    def start(self) -> None:
        self._port.start()

    def close(self) -> None:
        self._port.close()

    @property
    def connected(self) -> bool:
        return self._port.connected

    def keep_alive(self) -> None:
        self._alive_at = time.monotonic()

    def last_beat(self) -> float:
        """When the driver's I/O task last went round its loop (monotonic seconds)."""
        return self._port.last_loop
