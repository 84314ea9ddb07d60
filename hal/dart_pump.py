"""Pi-side driver for Wayne DART pumps on one RS-485 line, with the relay board's
interface and events, so the agent drives a protocol pump exactly as a relay-board pump.

Channel i is the pump at address 0x50 + i. "Pulses" are the pump's volume unit, 0.01 L,
so configure such pumps with pulses_per_litre = 100. Authorising sends RESET, the volume
preset and AUTHORIZE in one DATA frame; the end of a fill is the pump's status 5 (filling
completed) or 6 (preset reached) followed by its filled volume.

A pump carries 1..4 logical nozzles (grades). `select_nozzles` restricts the next
authorisation to some of them (CD2): the pump delivers nothing from another nozzle. Totals
are kept per nozzle (DC101 for each); the pump's totaliser reported to the agent is their
sum, known only once every nozzle's totals have been read.

The line master (hal/dart_master.py) serves the pumps in turn; a pump that stops answering
is reported out of service (PumpOnline) and polled slowly; a STOP goes before everything.

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
from hal.relay_board import BoardEnd, BoardEvent, BoardLink, BoardStatus, NozzleChange, PumpOnline
from hal.serial_link import PortDriver, SerialPortThread


class _Channel:
    def __init__(self, nozzles: int) -> None:
        self.nozzles = nozzles
        self.allowed: tuple[int, ...] = ()  # for the next authorisation; () = all
        self.nozzle_totals: dict[int, int] = {}  # logical nozzle -> totals (0.01 L), as read
        self.auth_id = 0
        self.status = -1
        self.volume = 0
        self.nozzle_up = False
        self.stop_requested = False
        self.ending: str | None = None
        self.pending_end: BoardEnd | None = None  # fill over; waiting for the totals that close it

    @property
    def totals(self) -> int:
        """The pump's volume totaliser (0.01 L): the sum over its nozzles, -1 until all are read."""
        if len(self.nozzle_totals) < self.nozzles:
            return -1
        return sum(self.nozzle_totals.values())

    def totals_request(self) -> bytes:
        return b"".join(d.request_totals(n) for n in range(1, self.nozzles + 1))


class DartPumps(PortDriver):
    totals_required = True  # a DART pump knows no session ids: recovery needs its totals

    def __init__(self, port: str, on_event: Callable[[BoardEvent], None], channels: int = 1,
                 baudrate: int = 9600, alive_window_s: float = 1.0,
                 nozzles: tuple[int, ...] = ()) -> None:
        self._on_event = on_event
        self._master = DartMaster([d.ADDR_MIN + i for i in range(channels)])
        self._channels = [_Channel(nozzles[i] if i < len(nozzles) else 1) for i in range(channels)]
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

    def select_nozzles(self, channel: int, nozzles: tuple[int, ...]) -> None:
        """The next authorisation on this pump delivers only from these logical nozzles."""
        with self._lock:
            self._channels[channel].allowed = tuple(nozzles)

    def set_prices(self, channel: int, prices: list[int]) -> None:
        """Unit prices per logical nozzle (Rp per litre), as the signed policy sets them."""
        with self._lock:
            ch = self._channels[channel]
            if len(prices) == ch.nozzles:
                self._master.send(d.ADDR_MIN + channel, d.price_update(prices))

    def _authorize(self, channel: int, auth_id: int, preset: bytes) -> None:
        with self._lock:
            ch = self._channels[channel]
            ch.auth_id, ch.volume, ch.stop_requested, ch.ending = auth_id, 0, False, None
            allowed = d.allowed_nozzles(list(ch.allowed)) if ch.allowed else b""
            ch.allowed = ()
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_RESET) + allowed + preset + d.cmd(d.CMD_AUTHORIZE))

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
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_STOP), urgent=True)

    def query(self, channel: int) -> None:
        with self._lock:
            ch = self._channels[channel]
            self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_RETURN_STATUS) + d.cmd(d.CMD_RETURN_FILLING_INFO)
                              + ch.totals_request())

    def out_of_service(self, channel: int) -> bool:
        with self._lock:
            return self._master.out_of_service[d.ADDR_MIN + channel]

    def _state(self, connected: bool) -> None:
        if connected:
            # As with the relay board's HOST_HELLO: a (re)started host ends every fill it may
            # have authorised before, then asks each pump where it stands.
            with self._lock:
                for channel, ch in enumerate(self._channels):
                    ch.nozzle_totals = {}
                    self._master.send(d.ADDR_MIN + channel, d.cmd(d.CMD_STOP) + ch.totals_request(), urgent=True)
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
                elif event[0] == "online":
                    out.append(PumpOnline(event[1] - d.ADDR_MIN, event[2]))
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
                events.append(NozzleChange(channel, ch.nozzle_up, fields[2]))
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
                    ch.auth_id, ch.ending, ch.nozzle_totals = 0, None, {}
                    self._master.send(d.ADDR_MIN + channel, ch.totals_request())
            elif fields[0] == "totals" and 1 <= fields[1] <= ch.nozzles:
                ch.nozzle_totals[fields[1]] = fields[2]
                report = True
                if ch.pending_end is not None and ch.totals >= 0:
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
                           auth_id=ch.auth_id, pulses=ch.volume, totaliser=ch.totals,
                           nozzle_totals=tuple(ch.nozzle_totals.get(n, -1) for n in range(1, ch.nozzles + 1)))
