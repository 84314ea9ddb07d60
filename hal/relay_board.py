"""Pi-side driver for the relay board (relay + pulser + nozzle switch per fuelling point).

Heartbeats keep the board's dead-man timer fed only while the agent's main loop says it
is alive (`keep_alive`), so a hung agent drops every relay within the board's watchdog.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hal import relay_proto as rp
from hal.serial_link import PortDriver, SerialPortThread


@dataclass(frozen=True)
class BoardStatus:
    channel: int
    relay: bool
    nozzle: bool
    estop: bool
    fault: bool
    active: bool  # the fill for auth_id is running or settling; END will follow
    auth_id: int
    pulses: int
    totaliser: int
    nozzle_totals: tuple[int, ...] = ()  # a multi-grade pump's totals per logical nozzle


@dataclass(frozen=True)
class BoardEnd:
    channel: int
    auth_id: int
    pulses: int
    reason: str
    totaliser: int


@dataclass(frozen=True)
class NozzleChange:
    channel: int
    up: bool
    nozzle: int = 0  # the logical nozzle (grade) of a multi-grade pump; 0: not told


@dataclass(frozen=True)
class PumpOnline:
    """One pump on a shared line stopped answering (out of service) or came back."""

    channel: int
    online: bool


@dataclass(frozen=True)
class BoardFault:
    channel: int
    code: int
    pulses: int


@dataclass(frozen=True)
class BoardHello:
    firmware: int
    channels: int


@dataclass(frozen=True)
class FirmwareResult:
    """The board's answer to a firmware-update step (hal/fw_update.py)."""

    step: int
    code: int
    detail: int


@dataclass(frozen=True)
class BoardLink:
    connected: bool


@dataclass(frozen=True)
class CommandLost:
    """A reliable command was never acknowledged (board off, cable out)."""

    kind: str
    channel: int
    auth_id: int


BoardEvent = (BoardStatus | BoardEnd | NozzleChange | BoardFault | BoardHello | BoardLink | CommandLost
              | PumpOnline | FirmwareResult)


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def decode_event(mtype: int, values: tuple[int, ...]) -> BoardEvent | None:
    if mtype == rp.STATUS:
        ch, flags, auth_id, pulses, total = values
        return BoardStatus(ch, bool(flags & rp.FLAG_RELAY), bool(flags & rp.FLAG_NOZZLE),
                           bool(flags & rp.FLAG_ESTOP), bool(flags & rp.FLAG_FAULT),
                           bool(flags & rp.FLAG_ACTIVE),
                           auth_id, pulses, total)
    if mtype == rp.END:
        ch, auth_id, pulses, reason, total = values
        return BoardEnd(ch, auth_id, pulses, rp.END_REASONS.get(reason, f"code_{reason}"), total)
    if mtype == rp.NOZZLE:
        return NozzleChange(values[0], bool(values[1]))
    if mtype == rp.FAULT:
        return BoardFault(values[0], values[1], values[2])
    if mtype == rp.BOARD_HELLO:
        return BoardHello(values[0], values[1])
    if mtype == rp.FW_RESULT:
        return FirmwareResult(values[0], values[1], values[2])
    return None


class PumpController(Protocol):
    """What the agent needs from whatever authorises and meters its pumps."""

    # True when the device cannot tell whose fill a count is (no session ids), so crash
    # recovery rests on its totaliser: no fill may start while that is unknown.
    totals_required: bool

    def start(self) -> None: ...
    def close(self) -> None: ...
    def keep_alive(self) -> None: ...
    def last_beat(self) -> float: ...
    def authorize(self, channel: int, auth_id: int, preset_pulses: int) -> None: ...
    def stop(self, channel: int) -> None: ...
    def query(self, channel: int) -> None: ...


class RelayBoard(PortDriver):
    totals_required = False  # the board keeps the last authorisation's id and count

    def __init__(
        self,
        port: str,
        on_event: Callable[[BoardEvent], None],
        baudrate: int = 115200,
        heartbeat_ms: int = 200,
        alive_window_s: float = 1.0,
    ) -> None:
        self._on_event = on_event
        self._link = rp.Link()
        self._lock = threading.Lock()
        self._heartbeat_ms = heartbeat_ms
        self._alive_window_s = alive_window_s
        self._normal_alive_window_s = alive_window_s
        self._alive_at = time.monotonic()
        self._last_heartbeat = 0
        self._port = SerialPortThread(
            port, self._bytes, self._state, baudrate=baudrate, read_timeout_s=heartbeat_ms / 1000,
            on_idle=self._tick, name=f"relay-board:{port}", next_wait=self._next_wait,
            # Frames queued before we opened the port belong to a previous host; the board
            # repeats what matters (STATUS on QUERY) to this one.
            flush_on_open=True,
        )

    def authorize(self, channel: int, auth_id: int, preset_pulses: int) -> None:
        self._send(rp.AUTHORIZE, (channel, auth_id, preset_pulses))

    @property
    def port_name(self) -> str:
        return self._port.port

    def hold_heartbeats(self, held: bool) -> None:
        """Stop (or resume) the heartbeats as if the agent had died: the hardware check's
        dead-man test. Nothing else calls this."""
        self._alive_window_s = 0.0 if held else self._normal_alive_window_s

    def stop(self, channel: int) -> None:
        self._send(rp.STOP, (channel,))

    def query(self, channel: int) -> None:
        self._send(rp.QUERY, (channel,))

    def send_message(self, mtype: int, values: tuple[int | bytes, ...]) -> None:
        """Any reliable message (the firmware update's FW_* steps)."""
        with self._lock:
            self._link.send(mtype, values, _now_ms())
            out = self._link.take_output()
        self._port.write(out)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._link.in_flight

    def _send(self, mtype: int, values: tuple[int, ...]) -> None:
        with self._lock:
            self._link.send(mtype, values, _now_ms())
            out = self._link.take_output()
        self._port.write(out)
        self._port.wake()  # its retransmission timer is now the reader's next deadline

    def _next_wait(self) -> float:
        """Seconds until the next heartbeat or retransmission is due."""
        now = _now_ms()
        with self._lock:
            due = self._last_heartbeat + self._heartbeat_ms
            if time.monotonic() - self._alive_at > self._alive_window_s:
                due = now + self._heartbeat_ms  # no heartbeats for a stuck agent: nothing due
            retry = self._link.next_deadline()
        if retry >= 0:
            due = min(due, retry)
        return max(0.0, (due - now + 1) / 1000)  # +1 ms: never wake a hair before it is due

    def _state(self, connected: bool) -> None:
        if connected:
            # A (re)connected host announces itself: the board stops any fill it still runs.
            self._send(rp.HOST_HELLO, (rp.VERSION, int.from_bytes(os.urandom(4), "big")))
        self._on_event(BoardLink(connected))

    def _bytes(self, data: bytes) -> None:
        with self._lock:
            messages = self._link.feed(data, _now_ms())
            out = self._link.take_output()
        self._port.write(out)
        for mtype, values in messages:
            event = decode_event(mtype, values)
            if event is not None:
                self._on_event(event)

    def _tick(self) -> None:
        now = _now_ms()
        with self._lock:
            lost = self._link.poll(now)
            if (now - self._last_heartbeat >= self._heartbeat_ms
                    and time.monotonic() - self._alive_at <= self._alive_window_s):
                self._link.send(rp.HEARTBEAT, (), now)
                self._last_heartbeat = now
            out = self._link.take_output()
        self._port.write(out)
        for mtype, values in lost:
            if mtype in (rp.AUTHORIZE, rp.STOP):
                auth_id = values[1] if mtype == rp.AUTHORIZE else 0
                kind = "authorize" if mtype == rp.AUTHORIZE else "stop"
                self._on_event(CommandLost(kind, values[0], auth_id))
