"""Wayne DART pumps on one line (a pseudo-terminal or a real RS-485 adapter), for the
agent's DART driver and for technicians. Each pump has the dispenser model behind its
valve and answers the controller's POLL and DATA frames as a DART pump head does: status
(DC1), filled volume and amount (DC2), nozzle (DC3), totals per logical nozzle (DC101).
Volumes are in 0.01 L. A pump carries 1..4 logical nozzles (grades), each with its price
(CD5) and totals; an authorisation delivers only from the nozzles the controller allowed
(CD2; all of them when it sent none). A pump can be made `dead` (cable cut, head off):
it then answers nothing.

A pump that is not polled for COMM_TIMEOUT_S while authorised or filling stops by itself,
as real pump heads do when the controller disappears.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from hal import dart_proto as d
from simulators.dispenser import Dispenser, Faults
from simulators.pty_device import PtyDevice, SerialDevice, ThreadedDevice

COMM_TIMEOUT_S = 1.0  # pump heads make this configurable; short, as a dead-man should be


class SimPump:
    def __init__(self, addr: int, dispenser: Dispenser, price: int, accepted: list[tuple[int, int, int]],
                 nozzles: int = 1) -> None:
        self.addr = addr
        self.accepted = accepted  # shared by the line: (channel, n, preset) per authorisation
        self.disp = dispenser
        self.prices = [price] * nozzles  # per logical nozzle, set by CD5
        self.nozzle_totals_cl = [0] * nozzles
        self.allowed = list(range(1, nozzles + 1))
        self.lifted = 0  # the logical nozzle out of its holster, 0 for none
        self.dead = False
        self.on_meter: list[Callable[[int, int], None]] = []  # (nozzle, centilitres) per metered unit
        self.status = d.ST_RESET
        self.preset_cl = 0
        self.preset_amount = 0
        self.volume_cl = 0
        self.totals_cl = 0
        self.replies: list[bytes] = []
        self.unacked: tuple[int, bytes] | None = None
        self.tx = 0
        self.last_rx_tx = -1
        self.last_polled = time.monotonic()
        self._nozzle_reported = False
        self._progress_at = 0.0

    @property
    def valve(self) -> bool:
        return self.status in (d.ST_AUTHORISED, d.ST_FILLING)

    @property
    def price(self) -> int:
        return self.prices[max(0, self.lifted - 1)]

    def lift(self, nozzle: int) -> None:
        if not 1 <= nozzle <= len(self.prices):
            raise ValueError(f"pump {self.addr:02X} has nozzles 1..{len(self.prices)}")
        self.lifted = nozzle
        self.disp.nozzle_up = True

    def hang(self) -> None:
        self.disp.nozzle_up = False

    def _report(self, *transactions: bytes) -> None:
        self.replies.extend(transactions)

    def _status(self, status: int) -> None:
        self.status = status
        self._report(d.status(status))

    def _finish(self, status: int) -> None:
        """Valve closes; overrun still passes the meter; then status and the final volume."""
        self.disp.valve_closed()
        while self.disp.overrun_pulse():
            self._meter()
        self._status(status)
        self._report(d.filled(self.volume_cl, self.volume_cl * self.price // 100))

    def _meter(self) -> None:
        self.disp.totaliser_pulses += 1
        self.volume_cl += 1
        self.totals_cl += 1
        nozzle = max(1, self.lifted)
        self.nozzle_totals_cl[nozzle - 1] += 1
        for listener in self.on_meter:
            listener(nozzle, 1)

    def handle(self, code: int, data: bytes) -> None:
        try:
            fields = d.decode_transaction(code, data, from_pump=False)
        except d.DartError:
            return
        if fields[0] == "command":
            command = fields[1]
            if command == d.CMD_RETURN_STATUS:
                self._report(d.status(self.status))
            elif command == d.CMD_RETURN_FILLING_INFO:
                self._report(d.filled(self.volume_cl, self.volume_cl * self.price // 100))
            elif command == d.CMD_RESET and self.status not in (d.ST_AUTHORISED, d.ST_FILLING):
                self.preset_cl = 0
                self.preset_amount = 0
                self.allowed = list(range(1, len(self.prices) + 1))
                self._status(d.ST_RESET)
            elif command == d.CMD_AUTHORIZE and self.status == d.ST_RESET:
                self.volume_cl = 0
                self.accepted.append((self.addr - d.ADDR_MIN, len(self.accepted) + 1, self.preset_cl))
                self._status(d.ST_AUTHORISED)
            elif command == d.CMD_STOP and self.valve:
                self._finish(d.ST_FILLING_COMPLETED)
        elif fields[0] == "allowed_nozzles" and self.status == d.ST_RESET:
            self.allowed = [n for n in fields[1] if n <= len(self.prices)]
        elif fields[0] == "prices" and len(fields[1]) == len(self.prices) and not self.valve:
            self.prices = list(fields[1])
        elif fields[0] == "preset_volume" and self.status == d.ST_RESET:
            self.preset_cl = fields[1]
        elif fields[0] == "preset_amount" and self.status == d.ST_RESET:
            self.preset_amount = fields[1]
        elif fields[0] == "request_totals" and 1 <= fields[1] <= len(self.prices):
            volume = self.nozzle_totals_cl[fields[1] - 1]
            self._report(d.totals(fields[1], volume, volume * self.prices[fields[1] - 1] // 100))

    def step(self, dt_s: float) -> None:
        up = self.disp.nozzle_up
        if up != self._nozzle_reported:
            self._nozzle_reported = up
            self._report(d.nozzle(self.price, max(1, self.lifted), up))
        if up and self.status == d.ST_AUTHORISED and self.lifted in self.allowed:
            self._status(d.ST_FILLING)
        if not up and self.status == d.ST_FILLING:
            self._finish(d.ST_FILLING_COMPLETED)
            return
        if self.valve and time.monotonic() - self.last_polled > COMM_TIMEOUT_S:
            self._finish(d.ST_FILLING_COMPLETED)  # the controller is gone: stop
            return
        if self.status == d.ST_FILLING and time.monotonic() - self._progress_at > 0.5 and not self.replies:
            self._progress_at = time.monotonic()  # running volume, as a pump head shows it
            self._report(d.filled(self.volume_cl, self.volume_cl * self.price // 100))
        for _ in range(self.disp.fuel_pulses(dt_s, self.valve and self.status == d.ST_FILLING)):
            self._meter()
            amount_reached = self.preset_amount and self.volume_cl * self.price // 100 >= self.preset_amount
            if (self.preset_cl and self.volume_cl >= self.preset_cl) or amount_reached:
                self.disp.flowing = True
                self._finish(d.ST_MAX_REACHED)
                return
            self.disp.flowing = True


class DartPumpSim(ThreadedDevice):
    def __init__(self, pumps: int = 1, flow_lps: float = 40 / 60, ramp_s: float = 0.0,
                 prices: tuple[int, ...] = (10_000,), faults: Faults | None = None,
                 nozzles: int | tuple[int, ...] = 1, device: PtyDevice | SerialDevice | None = None) -> None:
        self.device = device or PtyDevice()
        self._accepted: list[tuple[int, int, int]] = []
        counts = nozzles if isinstance(nozzles, tuple) else (nozzles,) * pumps
        self.pumps = [SimPump(d.ADDR_MIN + i, Dispenser(flow_lps, 100, ramp_s, 2, i + 1, faults or Faults()),
                              prices[i % len(prices)], self._accepted, counts[i]) for i in range(pumps)]
        self._by_addr = {p.addr: p for p in self.pumps}
        self._decoder = d.LineDecoder()
        self._controller_starts = 0  # frames "STOP + request totals": a controller (re)starting
        self._lock = threading.Lock()
        self._make_thread("dart-sim")
        self._last = time.monotonic()

    # --- the forecourt -----------------------------------------------------------------

    def lift_nozzle(self, channel: int, nozzle: int = 1) -> None:
        with self._lock:
            self.pumps[channel].lift(nozzle)

    def hang_nozzle(self, channel: int) -> None:
        with self._lock:
            self.pumps[channel].hang()

    def set_dead(self, channel: int, dead: bool) -> None:
        """A dead pump (cable cut, head without power) answers nothing."""
        with self._lock:
            self.pumps[channel].dead = dead

    def status_text(self) -> str:
        with self._lock:
            return "\n".join(
                f"channel {i} (pump {p.addr:02X}): {d.STATUS_NAMES.get(p.status, p.status)}"
                f"{' DEAD' if p.dead else ''}, nozzle {p.lifted if p.disp.nozzle_up else '-'} up,"
                f" totals " + " / ".join(f"{v / 100:.2f}" for v in p.nozzle_totals_cl) + " L"
                for i, p in enumerate(self.pumps))

    def nozzle_totaliser_ml(self, channel: int, nozzle: int) -> int:
        with self._lock:
            return self.pumps[channel].nozzle_totals_cl[nozzle - 1] * 10

    def prices(self, channel: int) -> list[int]:
        with self._lock:
            return list(self.pumps[channel].prices)

    def on_meter(self, channel: int, listener: Callable[[int, int], None]) -> None:
        """listener(nozzle, centilitres) for each unit metered on that pump (tank drains)."""
        with self._lock:
            self.pumps[channel].on_meter.append(listener)

    def relay_closed(self, channel: int) -> bool:
        with self._lock:
            return self.pumps[channel].valve

    def flowing(self, channel: int) -> bool:
        with self._lock:
            return self.pumps[channel].valve and self.pumps[channel].disp.nozzle_up

    def totaliser_ml(self, channel: int) -> int:
        with self._lock:
            return self.pumps[channel].disp.totaliser_ml()

    def host_hellos(self) -> int:
        """How often a controller announced a (re)start (the DART driver sends STOP and a
        totals request to every pump when it opens the line)."""
        with self._lock:
            return self._controller_starts

    def accepted(self) -> list[tuple[int, int, int]]:
        """(channel, n, preset) for every authorisation the pumps accepted, n counting up."""
        with self._lock:
            return list(self._accepted)

    # --- the line ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.device.read(0.005)
            with self._lock:
                now = time.monotonic()
                for pump in self.pumps:
                    pump.step(now - self._last)
                self._last = now
                out = b"".join(self._answer(event) for event in self._decoder.feed(data)) if data else b""
            if out:
                with contextlib.suppress(OSError):
                    self.device.write(out)

    def _answer(self, event: tuple) -> bytes:  # type: ignore[type-arg]
        if event[0] == "error" or event[1] not in self._by_addr:
            return b""
        pump = self._by_addr[event[1]]
        if pump.dead:
            return b""
        ctrl = event[2]
        pump.last_polled = time.monotonic()
        if event[0] == "frame":
            tx = ctrl & 0x0F
            if tx != pump.last_rx_tx:
                pump.last_rx_tx = tx
                with contextlib.suppress(d.DartError):
                    transactions = d.split_transactions(event[3])
                    codes = [c for c, _ in transactions]
                    if len(codes) >= 2 and codes[0] == d.CD1_COMMAND and transactions[0][1] == bytes([d.CMD_STOP]) \
                            and set(codes[1:]) == {d.CD101_REQUEST_TOTALS}:
                        self._controller_starts += 1
                    for code, data in transactions:
                        pump.handle(code, data)
            return d.encode_short(pump.addr, d.ACK | tx)
        kind = ctrl & 0xF0
        if kind == d.ACK and pump.unacked is not None and (ctrl & 0x0F) == pump.unacked[0]:
            pump.unacked = None
            return b""
        if ctrl == d.POLL:
            if pump.unacked is None and pump.replies:
                data = b"".join(pump.replies)
                pump.replies = []
                pump.unacked = (pump.tx, data)
                pump.tx = (pump.tx + 1) & 0x0F
            if pump.unacked is not None:
                return d.encode_frame(pump.addr, d.DATA | pump.unacked[0], pump.unacked[1])
            return d.encode_short(pump.addr, d.EOT)
        return b""
