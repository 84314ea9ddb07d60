"""DART line master: polls pumps one at a time and carries commands to them. Sans-IO:
the driver passes bytes and the time in milliseconds, and writes what `due` returns.

Rules followed (as controllers that work with real Wayne pumps do):
- one frame on the line at a time; after a pump answers, wait TURNAROUND_MS before
  transmitting again;
- a pump has RESPONSE_MS to answer a POLL or a DATA frame; no answer is a miss, and
  MAX_MISSES misses in a row make the pump offline (reported once) until it answers again;
- a DATA frame carries the block number tx (0..15) in CTRL and is repeated until the
  pump ACKs that tx; a pump's DATA is ACKed with its tx and delivered once, a repeat of
  the same tx (our ACK was lost) is ACKed again but not delivered again.
- a pump drops a DATA frame whose block number equals the last one it took, so a
  restarted master (counting from 0 again) could lose its first command. Each pump's
  first DATA is therefore a harmless RETURN_STATUS probe: dropped or not, it leaves the
  pump's last block number at 0, and our real commands start at 1.
MicroPython-compatible subset.
"""

from hal import dart_proto as d

RESPONSE_MS = 120
TURNAROUND_MS = 35
MAX_MISSES = 5


class DartMaster:
    def __init__(self, addresses: list, response_ms: int = RESPONSE_MS,  # type: ignore[type-arg]
                 turnaround_ms: int = TURNAROUND_MS, max_misses: int = MAX_MISSES) -> None:
        for addr in addresses:
            if not d.ADDR_MIN <= addr <= d.ADDR_MAX:
                raise d.DartError("pump address %02x outside 50..6F" % addr)
        self.addresses = list(addresses)
        self.response_ms = response_ms
        self.turnaround_ms = turnaround_ms
        self.max_misses = max_misses
        self._decoder = d.LineDecoder()
        self._queue: dict[int, list[bytes]] = {}  # addr -> queued DATA contents
        self._tx: dict[int, int] = {}  # addr -> our next block number
        self._rx_tx: dict[int, int] = {}  # addr -> last block number delivered from the pump
        self._misses: dict[int, int] = {}
        self.online: dict[int, bool] = {}
        for addr in self.addresses:
            self._queue[addr] = [d.cmd(d.CMD_RETURN_STATUS)]  # the probe (see above)
            self._tx[addr] = 0
            self._rx_tx[addr] = -1
            self._misses[addr] = 0
            self.online[addr] = False
        self._await: tuple[int, str, int] | None = None  # (addr, "poll" | "data", deadline)
        self._quiet_until = 0
        self._ack_owed: tuple[int, int] | None = None  # (addr, tx)
        self._next_poll = 0
        self._events: list[tuple] = []  # type: ignore[type-arg]

    def send(self, addr: int, data: bytes) -> None:
        """Queue transactions for a pump; they go out in one DATA frame, in order."""
        if addr not in self._queue:
            raise d.DartError("unknown pump %02x" % addr)
        self._queue[addr].append(data)

    def pending(self, addr: int) -> int:
        return len(self._queue[addr])

    def due(self, now: int) -> bytes | None:
        """The next frame to put on the line, or None while waiting."""
        if self._await is not None:
            if now < self._await[2]:
                return None
            self._miss(self._await[0])
            self._await = None
        if now < self._quiet_until:
            return None
        if self._ack_owed is not None:
            addr, tx = self._ack_owed
            self._ack_owed = None
            self._quiet_until = now + self.turnaround_ms
            return d.encode_short(addr, d.ACK | tx)
        for addr in self.addresses:
            if self._queue[addr]:
                self._await = (addr, "data", now + self.response_ms)
                return d.encode_frame(addr, d.DATA | self._tx[addr], self._queue[addr][0])
        addr = self.addresses[self._next_poll % len(self.addresses)]
        self._next_poll += 1
        self._await = (addr, "poll", now + self.response_ms)
        return d.encode_short(addr, d.POLL)

    def feed(self, chunk: bytes, now: int) -> list:  # type: ignore[type-arg]
        """Received bytes in; events out: ("reply", addr, [(code, data), ...]),
        ("online", addr, True | False), ("error", reason)."""
        for event in self._decoder.feed(chunk):
            if event[0] == "error":
                self._events.append(event)
                continue
            self._answer(event, now)
        events = self._events
        self._events = []
        return events

    def _answer(self, event: tuple, now: int) -> None:  # type: ignore[type-arg]
        addr = event[1]
        ctrl = event[2]
        if self._await is None or self._await[0] != addr:
            return  # not the pump we asked: a late answer or another master's traffic
        kind = self._await[1]
        self._await = None
        self._quiet_until = now + self.turnaround_ms
        self._heard(addr)
        if event[0] == "frame":
            tx = ctrl & 0x0F
            self._ack_owed = (addr, tx)
            if tx == self._rx_tx[addr]:
                return  # a repeat: ACK it again, do not deliver it twice
            self._rx_tx[addr] = tx
            try:
                transactions = d.split_transactions(event[3])
            except d.DartError as exc:
                self._events.append(("error", str(exc)))
                return
            self._events.append(("reply", addr, transactions))
            return
        kind_bits = ctrl & 0xF0
        if kind == "data" and kind_bits == d.ACK and (ctrl & 0x0F) == self._tx[addr]:
            self._queue[addr].pop(0)
            self._tx[addr] = (self._tx[addr] + 1) & 0x0F
        # EOT (nothing to say), NAK (resend later) and stray ACKs need no action.

    def _heard(self, addr: int) -> None:
        self._misses[addr] = 0
        if not self.online[addr]:
            self.online[addr] = True
            self._events.append(("online", addr, True))

    def _miss(self, addr: int) -> None:
        self._misses[addr] += 1
        if self._misses[addr] >= self.max_misses and self.online[addr]:
            self.online[addr] = False
            self._events.append(("online", addr, False))
