"""DART line master: serves the pumps of one RS-485 line in turn and carries commands to
them. Sans-IO: the driver passes bytes and the time in milliseconds, and writes what
`due` returns.

Rules followed (as controllers that work with real Wayne pumps do):
- one frame on the line at a time; after a pump answers, wait TURNAROUND_MS before
  transmitting again;
- a pump has RESPONSE_MS to answer a POLL or a DATA frame; no answer is a miss;
- a DATA frame carries the block number tx (0..15) in CTRL and is repeated until the
  pump ACKs that tx; a pump's DATA is ACKed with its tx and delivered once, a repeat of
  the same tx (our ACK was lost) is ACKed again but not delivered again.
- a pump drops a DATA frame whose block number equals the last one it took, so a
  restarted master (counting from 0 again) could lose its first command. Each pump's
  first DATA is therefore a harmless RETURN_STATUS probe: dropped or not, it leaves the
  pump's last block number at 0, and our real commands start at 1.

Fairness (one dead pump must never block the others):
- pumps are served in turn, one frame per turn: its next queued DATA, or a POLL;
- MAX_MISSES misses in a row put a pump out of service (reported once, as
  ("online", addr, False)); it is then tried only every SLOW_POLL_MS until it answers;
- a pump with an urgent command queued (STOP) goes before every other pump's turn, so a
  STOP reaches the wire within one frame time whatever the other pumps do; the pump's
  earlier queued commands go first with it, in order (a STOP must never overtake the
  AUTHORIZE it cancels);
- a command identical to one still queued and not yet on the wire is merged with it.
MicroPython-compatible subset.
"""

from hal import dart_proto as d

RESPONSE_MS = 120
TURNAROUND_MS = 35
MAX_MISSES = 5
SLOW_POLL_MS = 2000


class _Pump:
    def __init__(self) -> None:
        self.queue = [d.cmd(d.CMD_RETURN_STATUS)]  # the probe (see above)
        self.sent_head = False  # queue[0] has been on the wire: never merge or reorder it
        self.urgent = 0  # queue[:urgent] holds an urgent command: serve this pump first
        self.tx = 0  # our next block number
        self.rx_tx = -1  # last block number delivered from the pump
        self.misses = 0
        self.next_try = 0  # out of service: not before this time (ms)


class DartMaster:
    def __init__(self, addresses: list, response_ms: int = RESPONSE_MS,  # type: ignore[type-arg]
                 turnaround_ms: int = TURNAROUND_MS, max_misses: int = MAX_MISSES,
                 slow_poll_ms: int = SLOW_POLL_MS) -> None:
        for addr in addresses:
            if not d.ADDR_MIN <= addr <= d.ADDR_MAX:
                raise d.DartError("pump address %02x outside 50..6F" % addr)
        self.addresses = list(addresses)  # type: list[int]
        self.response_ms = response_ms
        self.turnaround_ms = turnaround_ms
        self.max_misses = max_misses
        self.slow_poll_ms = slow_poll_ms
        self._decoder = d.LineDecoder()
        self._pumps = {}  # type: dict[int, _Pump]
        self.online = {}  # type: dict[int, bool]
        self.out_of_service = {}  # type: dict[int, bool]
        for addr in self.addresses:
            self._pumps[addr] = _Pump()
            self.online[addr] = False
            self.out_of_service[addr] = False
        self._await = None  # type: tuple[int, str, int] | None  # (addr, "poll" | "data", deadline)
        self._quiet_until = 0
        self._ack_owed = None  # type: tuple[int, int] | None  # (addr, tx)
        self._turn = 0
        self._events = []  # type: list[tuple]  # type: ignore[type-arg]
        self.frames_to = {}  # type: dict[int, int]  # frames put on the wire per pump
        for addr in self.addresses:
            self.frames_to[addr] = 0

    def send(self, addr: int, data: bytes, urgent: bool = False) -> None:
        """Queue transactions for a pump; they go out in one DATA frame, in order. An
        `urgent` command (STOP) makes this pump the next one served."""
        pump = self._pumps.get(addr)
        if pump is None:
            raise d.DartError("unknown pump %02x" % addr)
        start = 1 if pump.sent_head else 0
        if not urgent and data in pump.queue[start:]:
            return  # the same request is already waiting: one answer serves both
        pump.queue.append(data)
        if urgent:
            pump.urgent = len(pump.queue)

    def pending(self, addr: int) -> int:
        return len(self._pumps[addr].queue)

    def due(self, now: int) -> bytes | None:
        """The next frame to put on the line, or None while waiting."""
        if self._await is not None:
            if now < self._await[2]:
                return None
            self._miss(self._await[0], now)
            self._await = None
        if now < self._quiet_until:
            return None
        if self._ack_owed is not None:
            addr, tx = self._ack_owed
            self._ack_owed = None
            self._quiet_until = now + self.turnaround_ms
            return self._out(addr, d.encode_short(addr, d.ACK | tx))
        chosen = self._next_pump(now)
        if chosen is None:
            return None
        addr = chosen
        pump = self._pumps[addr]
        if pump.queue:
            pump.sent_head = True
            self._await = (addr, "data", now + self.response_ms)
            return self._out(addr, d.encode_frame(addr, d.DATA | pump.tx, pump.queue[0]))
        self._await = (addr, "poll", now + self.response_ms)
        return self._out(addr, d.encode_short(addr, d.POLL))

    def _out(self, addr: int, frame: bytes) -> bytes:
        self.frames_to[addr] += 1
        return frame

    def _ready(self, addr: int, now: int) -> bool:
        return not self.out_of_service[addr] or now >= self._pumps[addr].next_try

    def _next_pump(self, now: int) -> int | None:
        for addr in self.addresses:  # urgent commands first, to pumps that answer: a STOP
            if self._pumps[addr].urgent and not self.out_of_service[addr]:  # to a dead pump waits its turn
                return addr
        count = len(self.addresses)
        for i in range(count):
            addr = self.addresses[(self._turn + i) % count]
            if self._ready(addr, now):
                self._turn = (self._turn + i + 1) % count
                return addr
        return None  # every pump is out of service and none is due for a try

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
        pump = self._pumps[addr]
        if event[0] == "frame":
            tx = ctrl & 0x0F
            self._ack_owed = (addr, tx)
            if tx == pump.rx_tx:
                return  # a repeat: ACK it again, do not deliver it twice
            pump.rx_tx = tx
            try:
                transactions = d.split_transactions(event[3])
            except d.DartError as exc:
                self._events.append(("error", str(exc)))
                return
            self._events.append(("reply", addr, transactions))
            return
        if kind == "data" and ctrl & 0xF0 == d.ACK and (ctrl & 0x0F) == pump.tx:
            pump.queue.pop(0)
            pump.sent_head = False
            pump.urgent = max(0, pump.urgent - 1)
            pump.tx = (pump.tx + 1) & 0x0F
        # EOT (nothing to say), NAK (resend later) and stray ACKs need no action.

    def _heard(self, addr: int) -> None:
        self._pumps[addr].misses = 0
        self.out_of_service[addr] = False
        if not self.online[addr]:
            self.online[addr] = True
            self._events.append(("online", addr, True))

    def _miss(self, addr: int, now: int) -> None:
        pump = self._pumps[addr]
        pump.misses += 1
        if pump.misses < self.max_misses:
            return
        pump.next_try = now + self.slow_poll_ms
        if not self.out_of_service[addr]:
            self.out_of_service[addr] = True
            self.online[addr] = False
            self._events.append(("online", addr, False))
