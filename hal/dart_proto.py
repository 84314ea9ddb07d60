"""Wayne DART pump interface, line and application level: a sans-IO codec.

Line frame:  ADR CTRL [data...] CRC_LO CRC_HI ETX(0x03) SF(0xFA)
Short frame: ADR CTRL SF   (POLL, ACK, NAK, EOT, ACKPOLL)

- ADR is the pump address, 0x50..0x6F.
- CTRL: 0x20 POLL, 0x30|tx DATA, 0xC0|tx ACK, 0x50|tx NAK, 0x70|tx EOT, 0xE0|tx ACKPOLL,
  tx being the 4-bit block sequence number.
- CRC: the specification says CRC-16/CCITT, but frames captured from real Wayne pumps
  match CRC-16/ARC (reflected poly 0xA001, init 0), sent low byte first; this codec
  follows the pumps. It covers ADR, CTRL and the data.
- The only byte escaped is 0xFA inside data and CRC: it is sent as DLE(0x10) 0xFA.
- Data is a sequence of transactions: TRANS LNG bytes[LNG].

Numbers inside transactions are packed BCD, most significant digit first.
MicroPython-compatible subset: no I/O, no clock; bytes in, events out.
"""

ETX = 0x03
SF = 0xFA
DLE = 0x10
ADDR_MIN = 0x50
ADDR_MAX = 0x6F
MAX_FRAME = 256

POLL = 0x20
DATA = 0x30
ACK = 0xC0
NAK = 0x50
EOT = 0x70
ACKPOLL = 0xE0

# Controller -> pump transactions
CD1_COMMAND = 0x01
CD2_ALLOWED_NOZZLES = 0x02
CD3_PRESET_VOLUME = 0x03
CD4_PRESET_AMOUNT = 0x04
CD5_PRICE_UPDATE = 0x05
CD101_REQUEST_TOTALS = 0x65
# CD1 command codes
CMD_RETURN_STATUS = 0x00
CMD_RETURN_FILLING_INFO = 0x04
CMD_RESET = 0x05
CMD_AUTHORIZE = 0x06
CMD_STOP = 0x08
CMD_SWITCH_OFF = 0x0A

# Pump -> controller transactions
DC1_STATUS = 0x01
DC2_FILLED = 0x02
DC3_NOZZLE = 0x03
DC101_TOTALS = 0x65
# DC1 pump status codes
ST_NOT_PROGRAMMED = 0
ST_RESET = 1
ST_AUTHORISED = 2
ST_FILLING = 4
ST_FILLING_COMPLETED = 5
ST_MAX_REACHED = 6
ST_SWITCHED_OFF = 7
STATUS_NAMES = {
    ST_NOT_PROGRAMMED: "not_programmed",
    ST_RESET: "reset",
    ST_AUTHORISED: "authorised",
    ST_FILLING: "filling",
    ST_FILLING_COMPLETED: "filling_completed",
    ST_MAX_REACHED: "max_reached",
    ST_SWITCHED_OFF: "switched_off",
}


class DartError(ValueError):
    pass


def crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def to_bcd(value: int, nbytes: int) -> bytes:
    if value < 0 or value >= 10 ** (2 * nbytes):
        raise DartError("value %d does not fit %d BCD bytes" % (value, nbytes))
    out = bytearray(nbytes)
    for i in range(nbytes - 1, -1, -1):
        low = value % 10
        value //= 10
        high = value % 10
        value //= 10
        out[i] = (high << 4) | low
    return bytes(out)


def from_bcd(data: bytes) -> int:
    value = 0
    for byte in data:
        high = byte >> 4
        low = byte & 0x0F
        if high > 9 or low > 9:
            raise DartError("not packed BCD: %02x" % byte)
        value = value * 100 + high * 10 + low
    return value


def _check_addr(addr: int) -> None:
    if not ADDR_MIN <= addr <= ADDR_MAX:
        raise DartError("pump address %02x outside 50..6F" % addr)


def valid_ctrl(ctrl: int) -> bool:
    kind = ctrl & 0xF0
    return ctrl == POLL or kind in (DATA, ACK, NAK, EOT, ACKPOLL)


def encode_short(addr: int, ctrl: int) -> bytes:
    _check_addr(addr)
    if not valid_ctrl(ctrl):
        raise DartError("bad control byte %02x" % ctrl)
    return bytes([addr, ctrl, SF])


def encode_frame(addr: int, ctrl: int, data: bytes) -> bytes:
    _check_addr(addr)
    if ctrl & 0xF0 != DATA:
        raise DartError("only DATA frames carry data, not control %02x" % ctrl)
    body = bytes([addr, ctrl]) + data
    crc = crc16_arc(body)
    out = bytearray()
    for byte in body + bytes([crc & 0xFF, crc >> 8]):
        if byte == SF:
            out.append(DLE)
        out.append(byte)
    out.append(ETX)
    out.append(SF)
    return bytes(out)


def transaction(code: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise DartError("transaction too long")
    return bytes([code, len(data)]) + data


def split_transactions(data: bytes) -> list:  # type: ignore[type-arg]
    """Data -> [(code, bytes)]; raises DartError on a length that overruns the data."""
    out = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise DartError("truncated transaction header")
        code = data[i]
        length = data[i + 1]
        if i + 2 + length > len(data):
            raise DartError("transaction %02x overruns the frame" % code)
        out.append((code, bytes(data[i + 2 : i + 2 + length])))
        i += 2 + length
    return out


# --- controller side: commands ------------------------------------------------------------


def cmd(code: int) -> bytes:
    return transaction(CD1_COMMAND, bytes([code]))


def allowed_nozzles(nozzles: list) -> bytes:  # type: ignore[type-arg]
    """The logical nozzles (1..15) the next authorisation may deliver from; the pump
    delivers nothing from a nozzle not in the list."""
    if not nozzles:
        raise DartError("at least one nozzle must be allowed")
    for number in nozzles:
        if not 1 <= number <= 15:
            raise DartError("logical nozzle %d outside 1..15" % number)
    return transaction(CD2_ALLOWED_NOZZLES, bytes(nozzles))


def preset_volume(centilitres: int) -> bytes:
    """Volume preset in the pump's volume unit (0.01 L with the usual pump parameters)."""
    return transaction(CD3_PRESET_VOLUME, to_bcd(centilitres, 4))


def preset_amount(amount: int) -> bytes:
    return transaction(CD4_PRESET_AMOUNT, to_bcd(amount, 4))


def price_update(prices: list) -> bytes:  # type: ignore[type-arg]
    data = b""
    for price in prices:
        data += to_bcd(price, 3)
    return transaction(CD5_PRICE_UPDATE, data)


def request_totals(nozzle: int) -> bytes:
    return transaction(CD101_REQUEST_TOTALS, bytes([nozzle]))


# --- pump side: replies ---------------------------------------------------------------------


def status(code: int) -> bytes:
    return transaction(DC1_STATUS, bytes([code]))


def filled(centilitres: int, amount: int) -> bytes:
    return transaction(DC2_FILLED, to_bcd(centilitres, 4) + to_bcd(amount, 4))


def nozzle(price: int, nozzle_number: int, out_of_holster: bool) -> bytes:
    nozio = (nozzle_number & 0x0F) | (0x10 if out_of_holster else 0)
    return transaction(DC3_NOZZLE, to_bcd(price, 3) + bytes([nozio]))


def totals(nozzle_number: int, centilitres: int, amount: int) -> bytes:
    return transaction(DC101_TOTALS, bytes([nozzle_number]) + to_bcd(centilitres, 5) + to_bcd(amount, 5))


def decode_transaction(code: int, data: bytes, from_pump: bool) -> tuple:  # type: ignore[type-arg]
    """A transaction's fields as a tuple (name first); DartError if malformed."""
    if from_pump:
        if code == DC1_STATUS and len(data) == 1:
            return ("status", data[0])
        if code == DC2_FILLED and len(data) == 8:
            return ("filled", from_bcd(data[:4]), from_bcd(data[4:]))
        if code == DC3_NOZZLE and len(data) == 4:
            return ("nozzle", from_bcd(data[:3]), data[3] & 0x0F, bool(data[3] & 0x10))
        if code == DC101_TOTALS and len(data) == 11:
            return ("totals", data[0], from_bcd(data[1:6]), from_bcd(data[6:11]))
    else:
        if code == CD1_COMMAND and len(data) == 1:
            return ("command", data[0])
        if code == CD2_ALLOWED_NOZZLES and data and all(1 <= b <= 15 for b in data):
            return ("allowed_nozzles", list(data))
        if code == CD3_PRESET_VOLUME and len(data) == 4:
            return ("preset_volume", from_bcd(data))
        if code == CD4_PRESET_AMOUNT and len(data) == 4:
            return ("preset_amount", from_bcd(data))
        if code == CD5_PRICE_UPDATE and len(data) % 3 == 0 and data:
            return ("prices", [from_bcd(data[i : i + 3]) for i in range(0, len(data), 3)])
        if code == CD101_REQUEST_TOTALS and len(data) == 1:
            return ("request_totals", data[0])
    raise DartError("unknown or malformed transaction %02x (%d bytes)" % (code, len(data)))


class LineDecoder:
    """Bytes in, frames out. Events:
    ("short", addr, ctrl) | ("frame", addr, ctrl, data) | ("error", reason).
    A bad frame is reported and dropped; decoding goes on with the next one."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._escape = False
        self.errors = 0

    def feed(self, chunk: bytes) -> list:  # type: ignore[type-arg]
        events = []
        for byte in chunk:
            if self._escape:
                # DLE FA is an FA inside the frame; DLE before anything else is plain data.
                self._escape = False
                if byte == SF:
                    self._buf.append(SF)
                    continue
                self._buf.append(DLE)
            if byte == DLE and len(self._buf) >= 2:
                self._escape = True
            elif byte == SF:
                events.append(self._frame(bytes(self._buf)))
                self._buf = bytearray()
            else:
                self._buf.append(byte)
                if len(self._buf) > MAX_FRAME:
                    events.append(self._error("frame longer than %d bytes" % MAX_FRAME))
        return events

    def _error(self, reason: str) -> tuple:  # type: ignore[type-arg]
        self.errors += 1
        self._buf = bytearray()
        self._escape = False
        return ("error", reason)

    def _frame(self, raw: bytes) -> tuple:  # type: ignore[type-arg]
        if len(raw) < 2:
            return self._error("frame too short")
        addr = raw[0]
        ctrl = raw[1]
        if not ADDR_MIN <= addr <= ADDR_MAX:
            return self._error("address %02x outside 50..6F" % addr)
        if not valid_ctrl(ctrl):
            return self._error("bad control byte %02x" % ctrl)
        if len(raw) == 2:
            return ("short", addr, ctrl)
        if len(raw) < 5 or raw[-1] != ETX:
            return self._error("missing ETX")
        body = raw[:-3]
        crc = raw[-3] | (raw[-2] << 8)
        if crc16_arc(body) != crc:
            return self._error("CRC mismatch")
        return ("frame", addr, ctrl, bytes(body[2:]))
