"""Small helpers shared by the tests."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, step_s: float = 0.01) -> bool:
    """Poll a condition until it holds or the time is up; bounded, never a busy loop."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def wait_for(events: queue.Queue[Any], match: Callable[[Any], bool], timeout_s: float = 5.0) -> Any:
    """The first queued event that matches, skipping others; AssertionError if none comes."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            break
        if match(event):
            return event
    raise AssertionError("expected event did not arrive")
