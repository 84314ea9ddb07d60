"""What every `spbu` command shares: the one error type main() turns into a clear line,
exit codes, and the foreground wait of long-running commands. Its own module so the
command modules and the parser hub import it without importing each other."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A user-facing failure: printed as one line on stderr, exit code 2."""


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or Ctrl-C, for commands that run until stopped."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def serve_until_stopped(close: Callable[[], None]) -> None:
    """A simulator's foreground: wait for Ctrl-C or SIGTERM, then shut the device down."""
    stop = stop_on_signals()
    try:
        while not stop.wait(1.0):  # a timed wait: signal handlers run between waits
            pass
    finally:
        close()
