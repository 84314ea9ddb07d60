"""ECR link to a bank's EDC card terminal: a sans-IO codec after the common Indonesian
bank layout (RS-232, fixed-width ASCII fields). docs/protocols/ecr.md has every field.

Frame:

    STX(0x02) LEN(2 bytes BCD) DATA(LEN bytes ASCII) ETX(0x03) LRC

LRC is the XOR of every byte after STX up to and including ETX. The receiver answers a
good frame with ACK (0x06), a bad one with NAK (0x15); the sender retransmits on NAK or
when no ACK comes within `ack_timeout_ms`, at most `max_retries` times.

Written in the MicroPython-compatible subset: no clock reads, no typing at run time.
Times are integer milliseconds passed in by the caller.
"""

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
VERSION = "01"
MAX_DATA = 999  # the largest length four BCD digits can say

# Transaction types
SALE = "01"
VOID = "02"
REFUND = "03"
QRIS_SALE = "04"
INQUIRY = "05"  # last transaction: the terminal repeats its last record
TYPES = (SALE, VOID, REFUND, QRIS_SALE, INQUIRY)
TYPE_NAMES = {SALE: "sale", VOID: "void", REFUND: "refund", QRIS_SALE: "qris_sale", INQUIRY: "inquiry"}

# Response codes (ISO 8583 meanings the banks' terminals pass through)
APPROVED = "00"
NOT_ANSWERED = "  "  # a request: no response code yet
NO_RECORD = "25"  # inquiry with nothing to repeat, or a void of an unknown invoice
RESPONSE_TEXT = {
    "00": "approved",
    "05": "do not honour",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "25": "no such record",
    "51": "insufficient funds",
    "54": "expired card",
    "55": "incorrect PIN",
    "61": "exceeds withdrawal limit",
    "68": "response received too late",
    "91": "issuer unavailable",
    "94": "duplicate transmission",
    "96": "system malfunction",
}

# (name, width, kind): "n" digits, "a" printable ASCII (space padded on the right)
FIELDS = (
    ("version", 2, "n"),
    ("trans_type", 2, "n"),
    ("amount", 12, "n"),  # whole Rupiah * 100: 2 implied decimals
    ("ecr_ref", 12, "a"),  # the cash register's reference, echoed by the terminal
    ("invoice", 6, "n"),  # the terminal's trace number; a void names the sale's
    ("approval", 6, "a"),
    ("rrn", 12, "a"),
    ("response", 2, "a"),
    ("tid", 8, "a"),
    ("mid", 15, "a"),
    ("card_type", 10, "a"),
    ("date", 6, "n"),  # YYMMDD
    ("time", 6, "n"),  # hhmmss
)
DATA_LEN = 99


class EcrError(ValueError):
    pass


class Message:
    """One ECR record. Text fields are kept stripped of their padding; `amount_idr` is
    whole Rupiah (the wire carries two implied decimals, always 00 here)."""

    def __init__(self, trans_type: str, amount_idr: int = 0, ecr_ref: str = "", invoice: str = "000000",
                 approval: str = "", rrn: str = "", response: str = "", tid: str = "", mid: str = "",
                 card_type: str = "", date: str = "000000", time: str = "000000",
                 version: str = VERSION) -> None:
        self.version = version
        self.trans_type = trans_type
        self.amount_idr = amount_idr
        self.ecr_ref = ecr_ref
        self.invoice = invoice
        self.approval = approval
        self.rrn = rrn
        self.response = response
        self.tid = tid
        self.mid = mid
        self.card_type = card_type
        self.date = date
        self.time = time

    @property
    def approved(self) -> bool:
        return self.response == APPROVED

    def values(self) -> tuple:  # type: ignore[type-arg]
        return (self.version, self.trans_type, self.amount_idr, self.ecr_ref, self.invoice, self.approval,
                self.rrn, self.response, self.tid, self.mid, self.card_type, self.date, self.time)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.values() == other.values()

    def __repr__(self) -> str:
        return "Message(%s)" % ", ".join(repr(v) for v in self.values())


def _is_digits(text: str) -> bool:
    return all("0" <= ch <= "9" for ch in text)


def _is_printable(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def encode_data(msg: Message) -> bytes:
    if msg.amount_idr < 0 or msg.amount_idr > 9999999999:
        raise EcrError("amount out of range")
    texts = (msg.version, msg.trans_type, "%012d" % (msg.amount_idr * 100), msg.ecr_ref, msg.invoice,
             msg.approval, msg.rrn, msg.response, msg.tid, msg.mid, msg.card_type, msg.date, msg.time)
    out = []
    for i in range(len(FIELDS)):
        name, width, kind = FIELDS[i]
        text = texts[i]
        if len(text) > width or not _is_printable(text):
            raise EcrError("field %s does not fit %d printable characters" % (name, width))
        if kind == "n" and (len(text) != width or not _is_digits(text)):
            raise EcrError("field %s must be %d digits" % (name, width))
        out.append(text + " " * (width - len(text)))
    if msg.trans_type not in TYPES:
        raise EcrError("unknown transaction type %s" % msg.trans_type)
    return "".join(out).encode()


def decode_data(data: bytes) -> Message:
    if len(data) != DATA_LEN:
        raise EcrError("data is %d bytes, expected %d" % (len(data), DATA_LEN))
    for byte in data:
        if byte < 0x20 or byte > 0x7E:
            raise EcrError("data is not printable ASCII")
    text = data.decode()
    values = []
    pos = 0
    for name, width, kind in FIELDS:
        field = text[pos:pos + width]
        pos += width
        if kind == "n" and not _is_digits(field):
            raise EcrError("field %s is not %d digits" % (name, width))
        values.append(field.rstrip(" ") if kind == "a" else field)
    if values[0] != VERSION:
        raise EcrError("unsupported version %s" % values[0])
    if values[1] not in TYPES:
        raise EcrError("unknown transaction type %s" % values[1])
    cents = int(values[2])
    if cents % 100:
        raise EcrError("amount has cents; Rupiah are whole")
    return Message(values[1], cents // 100, values[3], values[4], values[5], values[6], values[7], values[8],
                   values[9], values[10], values[11], values[12], values[0])


def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def _bcd(n: int) -> bytes:
    return bytes([((n // 1000) << 4) | ((n // 100) % 10), (((n // 10) % 10) << 4) | (n % 10)])


def _from_bcd(hi: int, lo: int) -> int:
    digits = (hi >> 4, hi & 15, lo >> 4, lo & 15)
    n = 0
    for d in digits:
        if d > 9:
            return -1
        n = n * 10 + d
    return n


def encode_frame(data: bytes) -> bytes:
    if len(data) > MAX_DATA:
        raise EcrError("data too long")
    body = _bcd(len(data)) + data + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def encode_message(msg: Message) -> bytes:
    return encode_frame(encode_data(msg))


class FrameDecoder:
    """Bytes in, events out: ("ack",), ("nak",), ("frame", data) or ("bad", reason).
    Never raises on input. A partial frame older than `gap_ms` is abandoned, so a frame
    cut short by a power cycle does not swallow the next one."""

    def __init__(self, gap_ms: int = 500) -> None:
        self.gap_ms = gap_ms
        self._buf = bytearray()
        self._last_ms = 0
        self.rejected = 0

    def feed(self, data: bytes, now: int) -> list:  # type: ignore[type-arg]
        events = []  # type: list[tuple[object, ...]]
        buf = self._buf
        if buf and now - self._last_ms > self.gap_ms:
            buf[:] = b""
            self.rejected += 1
            events.append(("bad", "timeout"))
        self._last_ms = now
        buf.extend(data)
        while buf:
            if buf[0] != STX:
                byte = buf[0]
                buf[:] = buf[1:]
                if byte == ACK:
                    events.append(("ack",))
                elif byte == NAK:
                    events.append(("nak",))
                continue
            if len(buf) < 3:
                break
            length = _from_bcd(buf[1], buf[2])
            if length < 0:
                self.rejected += 1
                events.append(("bad", "length"))
                buf[:] = buf[1:]
                continue
            total = 1 + 2 + length + 2
            if len(buf) < total:
                break
            if buf[3 + length] != ETX:
                self.rejected += 1
                events.append(("bad", "framing"))
                buf[:] = buf[1:]
                continue
            body = bytes(buf[1:4 + length])
            if lrc(body) != buf[4 + length]:
                self.rejected += 1
                events.append(("bad", "lrc"))
                buf[:] = buf[total:]
                continue
            events.append(("frame", body[2:2 + length]))
            buf[:] = buf[total:]
        return events


class Link:
    """One end of the ECR line (the cash register's or the terminal's). Sans-IO.

    `send` transmits a message and waits for ACK, retransmitting on NAK or ACK timeout;
    `feed` consumes bytes and returns events; `poll` runs the timers. Events:
    ("message", Message), ("invalid", reason), ("delivered",) when the peer ACKed,
    ("send_failed", reason) when retries ran out. Bytes to write: `take_output`.
    A frame repeated because our ACK was lost is ACKed again, not delivered twice.
    """

    def __init__(self, ack_timeout_ms: int = 2000, max_retries: int = 3, gap_ms: int = 500) -> None:
        self.ack_timeout_ms = ack_timeout_ms
        self.max_retries = max_retries
        self._decoder = FrameDecoder(gap_ms)
        self._out = bytearray()
        self._pending = b""  # the frame awaiting ACK
        self._deadline = 0
        self._tries = 0
        self._queue = []  # type: ignore[var-annotated]
        self._last_frame = b""
        self._last_frame_ms = 0
        self.retransmissions = 0

    @property
    def busy(self) -> bool:
        return bool(self._pending) or bool(self._queue)

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out = bytearray()
        return out

    def send(self, msg: Message, now: int) -> None:
        frame = encode_message(msg)
        if self._pending:
            self._queue.append(frame)
            return
        self._transmit(frame, now)

    def _transmit(self, frame: bytes, now: int) -> None:
        self._pending = frame
        self._tries = 1
        self._deadline = now + self.ack_timeout_ms
        self._out.extend(frame)

    def _retry(self, now: int, reason: str, events: list) -> None:  # type: ignore[type-arg]
        if self._tries > self.max_retries:
            self._pending = b""
            events.append(("send_failed", reason))
            self._next(now)
            return
        self._tries += 1
        self.retransmissions += 1
        self._deadline = now + self.ack_timeout_ms
        self._out.extend(self._pending)

    def _next(self, now: int) -> None:
        if self._queue and not self._pending:
            self._transmit(self._queue.pop(0), now)

    def forget_last_frame(self) -> None:
        self._last_frame = b""

    def abandon(self) -> None:
        """Forget what waits for ACK (the peer was power-cycled, say)."""
        self._pending = b""
        self._queue = []

    def feed(self, data: bytes, now: int) -> list:  # type: ignore[type-arg]
        events = []  # type: list[tuple[object, ...]]
        for event in self._decoder.feed(data, now):
            kind = event[0]
            if kind == "ack" and self._pending:
                self._pending = b""
                events.append(("delivered",))
                self._next(now)
            elif kind == "nak" and self._pending:
                self._retry(now, "nak", events)
            elif kind == "bad":
                if event[1] != "timeout":
                    self._out.append(NAK)
            elif kind == "frame":
                frame = event[1]
                try:
                    msg = decode_data(frame)
                except EcrError as exc:
                    self._out.append(NAK)
                    events.append(("invalid", str(exc)))
                    continue
                self._out.append(ACK)
                repeat = frame == self._last_frame and now - self._last_frame_ms <= (
                    self.ack_timeout_ms * (self.max_retries + 1))
                self._last_frame = frame
                self._last_frame_ms = now
                if not repeat:
                    events.append(("message", msg))
        return events

    def poll(self, now: int) -> list:  # type: ignore[type-arg]
        events = []  # type: list[tuple[object, ...]]
        if self._pending and now - self._deadline >= 0:
            self._retry(now, "ack_timeout", events)
        return events


class Host:
    """The cash register's side: one request at a time, answered within a response timeout.

    Events from `feed`/`poll`: ("response", request, Message) for the answer whose ecr_ref
    matches (any answer for an inquiry), ("stray", Message) for an answer to something else,
    ("no_ack", request) when the terminal never acknowledged the request, ("timeout",
    request) when it acknowledged but never answered. After "no_ack" or "timeout" the
    request's fate is unknown: ask with INQUIRY before charging again.
    """

    def __init__(self, ack_timeout_ms: int = 2000, max_retries: int = 3,
                 response_timeout_ms: int = 120000) -> None:
        self.link = Link(ack_timeout_ms, max_retries)
        self.response_timeout_ms = response_timeout_ms
        self.request = None  # type: Message | None
        self._response_deadline = -1

    @property
    def busy(self) -> bool:
        return self.request is not None

    def take_output(self) -> bytes:
        return self.link.take_output()

    def send(self, msg: Message, now: int) -> None:
        if self.request is not None:
            raise EcrError("a request is already outstanding")
        self.request = msg
        self._response_deadline = -1
        # An inquiry's answer repeats the last record byte for byte: after a new request an
        # identical frame is an answer, not a retransmission to drop. (The terminal keeps
        # its filter: a repeated request must never be charged twice.)
        self.link.forget_last_frame()
        self.link.send(msg, now)

    def abandon(self):  # type: () -> Message | None
        """The line went away: the outstanding request's fate is unknown; it is returned."""
        request = self.request
        self.request = None
        self.link.abandon()
        return request

    def _handle(self, raw: list, now: int) -> list:  # type: ignore[type-arg]
        events = []  # type: list[tuple[object, ...]]
        for event in raw:
            kind = event[0]
            request = self.request
            if kind == "delivered" and request is not None:
                self._response_deadline = now + self.response_timeout_ms
            elif kind == "send_failed" and request is not None:
                self.request = None
                events.append(("no_ack", request))
            elif kind == "message":
                msg = event[1]
                if request is not None and (request.trans_type == INQUIRY or msg.ecr_ref == request.ecr_ref):
                    self.request = None
                    self.link.abandon()  # an answer implies our request arrived
                    events.append(("response", request, msg))
                else:
                    events.append(("stray", msg))
        return events

    def feed(self, data: bytes, now: int) -> list:  # type: ignore[type-arg]
        return self._handle(self.link.feed(data, now), now)

    def poll(self, now: int) -> list:  # type: ignore[type-arg]
        events = self._handle(self.link.poll(now), now)
        request = self.request
        if request is not None and self._response_deadline >= 0 and now - self._response_deadline >= 0:
            self.request = None
            events.append(("timeout", request))
        return events
