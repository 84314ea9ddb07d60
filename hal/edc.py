"""Pi-side driver for the EDC card terminal on its ECR serial line (hal/ecr_proto.py).

Requests go out one at a time, in order; each ends in exactly one `EdcReply`: the
terminal's answer, or `no_ack` / `timeout` when its fate is unknown (the agent then asks
for the last transaction before charging again). Answers nobody waits for arrive as
`stray` replies so that a late approval is never ignored.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from hal import ecr_proto as ecr
from hal.serial_link import PortDriver, SerialPortThread


@dataclass(frozen=True)
class EdcReply:
    request: ecr.Message | None  # None for a stray answer
    outcome: str  # "response", "no_ack", "timeout", "stray"
    answer: ecr.Message | None


@dataclass(frozen=True)
class EdcLink:
    connected: bool


EdcEvent = EdcReply | EdcLink


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class EdcTerminal(PortDriver):
    def __init__(self, port: str, on_event: Callable[[EdcEvent], None], baudrate: int = 9600,
                 ack_timeout_s: float = 2.0, max_retries: int = 3, response_timeout_s: float = 120.0) -> None:
        self._on_event = on_event
        self._host = ecr.Host(int(ack_timeout_s * 1000), max_retries, int(response_timeout_s * 1000))
        self._lock = threading.Lock()
        self._queue: deque[ecr.Message] = deque()
        self._alive_at = time.monotonic()
        self._port = SerialPortThread(port, self._bytes, self._state, baudrate=baudrate, read_timeout_s=1.0,
                                      on_idle=self._tick, name=f"edc:{port}", flush_on_open=True,
                                      next_wait=self._next_wait)

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._queue and not self._host.busy

    def submit(self, request: ecr.Message) -> None:
        with self._lock:
            self._queue.append(request)
        self._tick()
        self._port.wake()

    def _next_wait(self) -> float:
        """Short while a request is on the line (ACK and response timers), else idle."""
        with self._lock:
            return 0.02 if self._queue or self._host.busy else 1.0

    def _state(self, connected: bool) -> None:
        lost = None
        if not connected:
            with self._lock:
                lost = self._host.abandon()  # unplugged mid-request: its fate is unknown
        if lost is not None:
            self._on_event(EdcReply(lost, "no_ack", None))
        self._on_event(EdcLink(connected))

    def _deliver(self, events: list[tuple[object, ...]]) -> None:
        for event in events:
            kind = str(event[0])
            if kind == "response":
                self._on_event(EdcReply(event[1], "response", event[2]))  # type: ignore[arg-type]
            elif kind in ("no_ack", "timeout"):
                self._on_event(EdcReply(event[1], kind, None))  # type: ignore[arg-type]
            elif kind == "stray":
                self._on_event(EdcReply(None, "stray", event[1]))  # type: ignore[arg-type]

    def _bytes(self, data: bytes) -> None:
        with self._lock:
            events = self._host.feed(data, _now_ms())
            out = self._host.take_output()
        self._port.write(out)
        self._deliver(events)
        self._tick()

    def _tick(self) -> None:
        with self._lock:
            now = _now_ms()
            events = self._host.poll(now)
            if not self._host.busy and self._queue and self._port.connected:
                self._host.send(self._queue.popleft(), now)
            out = self._host.take_output()
        self._port.write(out)
        self._deliver(events)
