"""Pi-side driver for Wayne DART pumps on one RS-485 line, with the relay board's
interface and events, so the agent drives a protocol pump exactly as a relay-board pump.

Channel i is the pump at address 0x50 + i. "Pulses" are the pump's volume unit, 0.01 L,
so configure such pumps with pulses_per_litre = 100. Authorising sends RESET, the volume
preset and AUTHORIZE in one DATA frame; the end of a fill is the pump's status 5 (filling
completed) or 6 (preset reached) followed by its filled volume.

Dead-man: the line is polled only while the agent's loop keeps the driver alive; a DART
pump head stops a fill by itself when its controller stops polling.

After a restart the driver knows no session ids, so the agent recovers an open session
from the pump's volume totaliser (DC101), journaled when the session was authorised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import serial

from hal import dart_proto as d
from hal.dart_master import DartMaster
from hal.relay_board import BoardEnd, BoardEvent, BoardLink, BoardStatus, NozzleChange
from hal.serial_link import PortDriver, SerialPortThread


class _Channel:
    def __init__(self) -> None:
        self.auth_id = 0
        self.status = -1
        self.volume = 0
        self.nozzle_up = False
        self.stop_requested = False
        self.ending: str | None = None
        self.totals = -1  # the pump's volume totaliser (0.01 L), -1 until read
        self.pending_end: BoardEnd | None = None  # fill over; waiting for the totals that close it


class DartPumps(PortDriver):
    totals_required = True  # a DART pump knows no session ids: recovery needs its totals

    def __init__(self, port: str, on_event: Callable[[BoardEvent], None], channels: int = 1,
                 baudrate: int = 9600, alive_window_s: float = 1.0) -> None:
        self._on_event = on_event
        self._master = DartMaster([d.ADDR_MIN + i for i in range(channels)])
        self._channels = [_Channel() for _ in range(channels)]
        self._lock = threading.Lock()
        self._alive_at = time.monotonic()
        self._alive_window_s = alive_window_s
        self._normal_alive_window_s = alive_window_s
        self._port = SerialPortThread(
            port, self._bytes, self._state, baudrate=baudrate, read_timeout_s=0.005,
            on_idle=self._tick, name=f"dart:{port}", serial_kwargs={"parity": serial.PARITY_ODD},
            flush_on_open=True)

    def authorize(self, channel: int, auth_id: int, preset_pulses: int) -> None:
        self._authorize(channel, auth_id, d.preset_volume(preset_pulses))

    def authorize_amount(self, channel: int, auth_id: int, amount: int) -> None:
        """Authorise with an amount preset (prepay): the pump stops at that money value."""
        self._authorize(channel, auth_id, d.preset_amount(amount))

    def _authorize(self, channel: int, auth_id: int, preset: bytes) -> None:
        with self._lock:
            ch = self._channels[channel]
            ch.auth_id, ch.volume, ch.stop_requested, ch.ending = auth_id, 0, False, None
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_RESET) + preset + d.cmd(d.CMD_AUTHORIZE))

    @property
    def port_name(self) -> str:
        return self._port.port

    def hold_heartbeats(self, held: bool) -> None:
        """Stop (or resume) the heartbeats as if the agent had died: the hardware check's
        dead-man test. Nothing else calls this."""
        self._alive_window_s = 0.0 if held else self._normal_alive_window_s

    def stop(self, channel: int) -> None:
        with self._lock:
            self._channels[channel].stop_requested = True
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_STOP))

    def query(self, channel: int) -> None:
        with self._lock:
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_RETURN_STATUS) + d.cmd(d.CMD_RETURN_FILLING_INFO)
                              + d.request_totals(1))

    def _state(self, connected: bool) -> None:
        if connected:
            # As with the relay board's HOST_HELLO: a (re)started host ends every fill it may
            # have authorised before, then asks each pump where it stands.
            with self._lock:
                for channel in range(len(self._channels)):
                    self._channels[channel].totals = -1
                    self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_STOP) + d.request_totals(1))
        self._on_event(BoardLink(connected))

    @staticmethod
    def _now() -> int:
        return int(time.monotonic() * 1000)

    def _tick(self) -> None:
        if time.monotonic() - self._alive_at > self._alive_window_s:
            return  # the agent's loop is stuck: stop polling, the pumps stop by themselves
        with self._lock:
            frame = self._master.due(self._now())
        if frame:
            self._port.write(frame)

    def _bytes(self, data: bytes) -> None:
        with self._lock:
            events = self._master.feed(data, self._now())
            out = []
            for event in events:
                if event[0] == "reply":
                    out += self._reply(event[1] - d.ADDR_MIN, event[2])
        for board_event in out:
            self._on_event(board_event)

    def _reply(self, channel: int, transactions: list[tuple[int, bytes]]) -> list[BoardEvent]:
        """One pump answer -> events; a single STATUS at the end, when every field of the
        answer (status, volume, totals) has been read."""
        ch = self._channels[channel]
        events: list[BoardEvent] = []
        report = False
        for code, data in transactions:
            try:
                fields = d.decode_transaction(code, data, from_pump=True)
            except d.DartError:
                continue
            if fields[0] == "nozzle" and fields[3] != ch.nozzle_up:
                ch.nozzle_up = fields[3]
                events.append(NozzleChange(channel, ch.nozzle_up))
            elif fields[0] == "status":
                ch.status = fields[1]
                report = True
                if ch.status in (d.ST_FILLING_COMPLETED, d.ST_MAX_REACHED) and ch.auth_id:
                    ch.ending = ("preset_reached" if ch.status == d.ST_MAX_REACHED
                                 else "host_stop" if ch.stop_requested else "nozzle_hung")
            elif fields[0] == "filled":
                ch.volume = fields[1]
                report = True
                if ch.ending is not None:
                    # The END goes out with the pump's totals after this fill, so the next
                    # session's "totaliser before" is never stale.
                    ch.pending_end = BoardEnd(channel, ch.auth_id, ch.volume, ch.ending, -1)
                    ch.auth_id, ch.ending, ch.totals = 0, None, -1
                    self._master.send(d.ADDR_MIN + channel, d.request_totals(1))
            elif fields[0] == "totals":
                ch.totals = fields[2]
                report = True
                if ch.pending_end is not None:
                    end = ch.pending_end
                    events.append(BoardEnd(end.channel, end.auth_id, end.pulses, end.reason, ch.totals))
                    ch.pending_end = None
        if report:
            events.append(self._status_event(channel))
        return events

    def _status_event(self, channel: int) -> BoardStatus:
        ch = self._channels[channel]
        running = ch.status in (d.ST_AUTHORISED, d.ST_FILLING)
        return BoardStatus(channel, relay=running, nozzle=ch.nozzle_up, estop=False, fault=False,
                           active=running or ch.ending is not None or ch.pending_end is not None,
                           auth_id=ch.auth_id, pulses=ch.volume,
                           totaliser=ch.totals)
