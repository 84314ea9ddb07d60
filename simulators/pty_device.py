"""A pseudo-terminal standing in for a serial device: the agent opens `path` exactly as it
would open /dev/ttyACM0; the simulator reads and writes the master side."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty


class FdDevice:
    """Reads and writes a raw file descriptor without blocking the simulator."""

    master: int
    path: str

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                select.select([], [self.master], [], 0.05)

    def read(self, timeout_s: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout_s)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return b""


class PtyDevice(FdDevice):
    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: a byte-clean line
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class SerialDevice(FdDevice):
    """A real serial port (e.g. a USB-serial adapter cabled to the Pi) in raw mode, so a
    simulator can stand in for a device on actual wiring. Same interface as PtyDevice."""

    def __init__(self, path: str, baudrate: int = 115200, odd_parity: bool = False) -> None:
        import termios

        self.path = path
        self.master = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.master)
        attrs = termios.tcgetattr(self.master)
        speed = getattr(termios, f"B{baudrate}")
        attrs[4] = attrs[5] = speed
        if odd_parity:  # Wayne DART lines: 8 data bits, odd parity, 1 stop bit
            attrs[2] |= termios.PARENB | termios.PARODD
        termios.tcsetattr(self.master, termios.TCSANOW, attrs)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.master)


class ThreadedDevice:
    """A simulated device's life cycle: one daemon thread serving its port until closed."""

    device: PtyDevice | SerialDevice

    def _make_thread(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    @property
    def path(self) -> str:
        return self.device.path

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.device.close()
