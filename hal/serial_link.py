"""A serial port kept open in a reader thread: reconnects when the device is unplugged
and plugged back, hands received bytes to a callback. Shared by the serial drivers.

The thread sleeps in select() until bytes arrive, the driver's next timer is due
(`next_wait`: a heartbeat, a retransmission) or another thread wakes it (`wake`), never
in a short polling loop: an idle station must let the Pi's core sleep. It still goes round
at least every `read_timeout_s` (its heartbeat for the service watchdog)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
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
        read_timeout_s: float = 1.0,
        reopen_s: float = 1.0,
        on_idle: Callable[[], None] | None = None,
        name: str = "serial",
        serial_kwargs: dict[str, object] | None = None,
        flush_on_open: bool = False,
        next_wait: Callable[[], float] | None = None,
    ) -> None:
        self.port = port
        self._on_bytes = on_bytes
        self._on_state = on_state
        self._on_idle = on_idle
        self._baudrate = baudrate
        self._read_timeout_s = read_timeout_s
        self._next_wait = next_wait
        self._reopen_s = reopen_s
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
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
        self.wake()
        self._thread.join(timeout=2)
        self._drop()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wake(self) -> None:
        """Make the reader re-check its timers now (a command was queued from another thread)."""
        with contextlib.suppress(OSError):  # a full pipe already wakes it
            os.write(self._wake_w, b"w")

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
                self.port, self._baudrate, timeout=0.05,  # read() only runs once bytes are there
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
                data = port.read(max(1, port.in_waiting)) if self._wait(port) else b""
            except (serial.SerialException, OSError, TypeError) as exc:
                log.warning("%s lost: %s", self.port, exc)
                self._drop()
                continue
            if data:
                self._on_bytes(data)
            if self._on_idle is not None:
                self._on_idle()

    def _wait(self, port: serial.Serial) -> bool:
        """Sleep until the port has bytes (True), or a timer is due or we are woken (False)."""
        if port.in_waiting:
            return True
        timeout = self._read_timeout_s
        if self._next_wait is not None:
            timeout = min(timeout, max(0.0, self._next_wait()))
        ready, _, _ = select.select([port.fileno(), self._wake_r], [], [], timeout)
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 512)
        # A readable port with nothing waiting is a hang-up: read() raises and we reopen.
        return port.fileno() in ready


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
