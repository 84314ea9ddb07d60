"""Veeder-Root TLS-300/350 and TLS-4 automatic tank gauge, serial computer interface:
a sans-IO codec (MicroPython-compatible subset).

Command (computer format):  <SOH> i FFF TT            e.g. 01 'i20100' = inventory, all tanks
Response:                   <SOH> i FFF TT <data> && CCCC <ETX>

- FFF is the function code: 201 in-tank inventory, 202 delivery report, 205 in-tank
  status (alarms). The display-format twins (`I201` ...) answer in printable text for a
  terminal; a computer talks in the computer format (`i201`), which this codec speaks.
- TT is the tank, decimal, 00 for all tanks.
- CCCC is four ASCII-hex digits: the 16-bit two's complement of the sum of every
  character before it (SOH through the `&&`), overflows ignored, so that the sum of the
  message characters plus the checksum is 0 mod 2^16.
- Numbers in the data are IEEE-754 single floats written as 8 ASCII-hex digits; counts
  (NN: number of float fields that follow) are 2 hex digits; tank status is 4 hex digits.
- A console that does not know a command answers `9999FF1B` (computer format).

Data of the three functions, after `i FFF TT YYMMDDHHmm` (the console's date and time):
  201, per tank:  TT p ssss NN  then NN floats: volume, TC volume, ullage, height, water,
                  temperature, water volume   (p: product code, one ASCII character)
  202, per tank:  TT p dd  then dd deliveries: YYMMDDHHmm start, YYMMDDHHmm end, NN, floats:
                  start volume, start TC volume, start water, start temperature, end volume,
                  end TC volume, end water, end temperature, start height, end height
  205, per tank:  TT nn  then nn two-digit alarm codes (ALARMS)
Units are the console's (this project sets litres, millimetres and degrees Celsius).
"""

import struct

SOH = 0x01
ETX = 0x03
INVENTORY = "201"
DELIVERIES = "202"
ALARMS_FN = "205"
UNKNOWN_COMMAND = b"9999FF1B"
MAX_MESSAGE = 8192

INVENTORY_FIELDS = ("volume", "tc_volume", "ullage", "height", "water", "temperature", "water_volume")
DELIVERY_FIELDS = ("start_volume", "start_tc_volume", "start_water", "start_temperature", "end_volume",
                   "end_tc_volume", "end_water", "end_temperature", "start_height", "end_height")
# Tank alarm codes of function 205 (in-tank status)
ALARMS = {
    1: "setup_data_warning", 2: "leak_alarm", 3: "high_water_alarm", 4: "overfill_alarm",
    5: "low_product_alarm", 6: "sudden_loss_alarm", 7: "high_product_alarm", 8: "invalid_fuel_level_alarm",
    9: "probe_out_alarm", 10: "high_water_warning", 11: "delivery_needed_warning", 12: "max_product_alarm",
    13: "gross_leak_test_fail_alarm", 14: "periodic_leak_test_fail_alarm", 15: "annual_leak_test_fail_alarm",
}
STATUS_DELIVERY = 0x0001  # tank status bit: a delivery is in progress
STATUS_LEAK_TEST = 0x0002  # a leak test is in progress


class TlsError(ValueError):
    pass


def checksum(data: bytes) -> int:
    total = 0
    for byte in data:
        total += byte & 0x7F  # the parity bit, if any, is cleared first
    return (-total) & 0xFFFF


def command(function: str, tank: int = 0) -> bytes:
    if len(function) != 3:
        raise TlsError("function code must be 3 characters")
    if not 0 <= tank <= 99:
        raise TlsError("tank %d outside 00..99" % tank)
    return bytes([SOH]) + ("i%s%02d" % (function, tank)).encode()


def frame(body: bytes) -> bytes:
    """A response: SOH, body (function code and data), &&, checksum, ETX."""
    head = bytes([SOH]) + body + b"&&"
    return head + ("%04X" % checksum(head)).encode() + bytes([ETX])


def float_hex(value: float) -> str:
    return "%08X" % struct.unpack(">I", struct.pack(">f", value))[0]


def hex_float(text: bytes) -> float:
    if len(text) != 8:
        raise TlsError("float field must be 8 hex digits")
    value = struct.unpack(">f", struct.pack(">I", _hex(text)))[0]  # type: float
    return value


def _hex(text: bytes) -> int:
    for byte in text:
        if not (0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x46 or 0x61 <= byte <= 0x66):
            raise TlsError("not hex: %r" % text)
    return int(text, 16)


def _dec(text: bytes) -> int:
    for byte in text:
        if not 0x30 <= byte <= 0x39:
            raise TlsError("not decimal: %r" % text)
    return int(text)


class Decoder:
    """Bytes in, messages out: ("message", function, tank, data) with data after the tank
    number, ("unknown_command",) or ("error", reason). Bytes outside SOH..ETX are line
    noise and are dropped; a bad message is reported and decoding goes on."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inside = False
        self.errors = 0

    def feed(self, chunk: bytes) -> list:  # type: ignore[type-arg]
        events = []
        for byte in chunk:
            byte &= 0x7F  # 7-bit line with parity: the console clears nothing for us
            if byte == SOH:
                if self._inside and self._buf:
                    events.append(self._error("message cut short by a new SOH"))
                self._inside = True
                self._buf = bytearray()
            elif not self._inside:
                continue
            elif byte == ETX:
                self._inside = False
                events.append(self._message(bytes(self._buf)))
                self._buf = bytearray()
            else:
                self._buf.append(byte)
                if len(self._buf) > MAX_MESSAGE:
                    self._inside = False
                    events.append(self._error("message longer than %d bytes" % MAX_MESSAGE))
        return events

    def _error(self, reason: str) -> tuple:  # type: ignore[type-arg]
        self.errors += 1
        self._buf = bytearray()
        return ("error", reason)

    def _message(self, raw: bytes) -> tuple:  # type: ignore[type-arg]
        if raw == UNKNOWN_COMMAND:
            return ("unknown_command",)
        if len(raw) < 12 or raw[-6:-4] != b"&&":
            return self._error("no && and checksum before ETX")
        try:
            sent = _hex(raw[-4:])
        except TlsError:
            return self._error("checksum is not hex")
        if checksum(bytes([SOH]) + raw[:-4]) != sent:
            return self._error("checksum mismatch")
        if raw[0:1] != b"i":
            return self._error("not a computer-format response")
        try:
            tank = _dec(raw[4:6])
        except TlsError:
            return self._error("bad tank number")
        return ("message", raw[1:4].decode(), tank, bytes(raw[6:-6]))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TlsError("data ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def left(self) -> int:
        return len(self.data) - self.pos

    def floats(self) -> list:  # type: ignore[type-arg]
        count = _hex(self.take(2))
        return [hex_float(self.take(8)) for _ in range(count)]


def _stamp(text: bytes) -> str:
    """YYMMDDHHmm -> 'YYYY-MM-DDTHH:mm' (the console's local time)."""
    _dec(text)
    if len(text) != 10:
        raise TlsError("date must be YYMMDDHHmm")
    s = text.decode()
    return "20%s-%s-%sT%s:%s" % (s[0:2], s[2:4], s[4:6], s[6:8], s[8:10])


def _unstamp(stamp: str) -> str:
    return stamp[2:4] + stamp[5:7] + stamp[8:10] + stamp[11:13] + stamp[14:16]


def parse_inventory(data: bytes) -> tuple:  # type: ignore[type-arg]
    """201 data -> (stamp, [(tank, product, status, {field: value})])."""
    r = _Reader(data)
    stamp = _stamp(r.take(10))
    tanks = []
    while r.left():
        tank = _dec(r.take(2))
        product = chr(r.take(1)[0])
        status = _hex(r.take(4))
        values = r.floats()
        fields = {}
        for i in range(min(len(values), len(INVENTORY_FIELDS))):
            fields[INVENTORY_FIELDS[i]] = values[i]
        tanks.append((tank, product, status, fields))
    return (stamp, tanks)


def parse_deliveries(data: bytes) -> tuple:  # type: ignore[type-arg]
    """202 data -> (stamp, [(tank, product, [(start, end, {field: value})])])."""
    r = _Reader(data)
    stamp = _stamp(r.take(10))
    tanks = []
    while r.left():
        tank = _dec(r.take(2))
        product = chr(r.take(1)[0])
        count = _dec(r.take(2))
        deliveries = []
        for _ in range(count):
            start = _stamp(r.take(10))
            end = _stamp(r.take(10))
            values = r.floats()
            fields = {}
            for i in range(min(len(values), len(DELIVERY_FIELDS))):
                fields[DELIVERY_FIELDS[i]] = values[i]
            deliveries.append((start, end, fields))
        tanks.append((tank, product, deliveries))
    return (stamp, tanks)


def parse_alarms(data: bytes) -> tuple:  # type: ignore[type-arg]
    """205 data -> (stamp, [(tank, [alarm name, ...])])."""
    r = _Reader(data)
    stamp = _stamp(r.take(10))
    tanks = []
    while r.left():
        tank = _dec(r.take(2))
        count = _dec(r.take(2))
        names = []
        for _ in range(count):
            code = _dec(r.take(2))
            names.append(ALARMS.get(code, "alarm_%02d" % code))
        tanks.append((tank, names))
    return (stamp, tanks)


# --- the console's side (simulator) -----------------------------------------------------


def _floats(values: list) -> str:  # type: ignore[type-arg]
    return "%02X" % len(values) + "".join(float_hex(v) for v in values)


def inventory_response(tank: int, stamp: str, tanks: list) -> bytes:  # type: ignore[type-arg]
    """tanks: [(tank, product, status, [7 floats in INVENTORY_FIELDS order])]."""
    body = "i%s%02d%s" % (INVENTORY, tank, _unstamp(stamp))
    for number, product, status, values in tanks:
        body += "%02d%s%04X" % (number, product, status) + _floats(values)
    return frame(body.encode())


def deliveries_response(tank: int, stamp: str, tanks: list) -> bytes:  # type: ignore[type-arg]
    """tanks: [(tank, product, [(start, end, [10 floats in DELIVERY_FIELDS order])])]."""
    body = "i%s%02d%s" % (DELIVERIES, tank, _unstamp(stamp))
    for number, product, deliveries in tanks:
        body += "%02d%s%02d" % (number, product, len(deliveries))
        for start, end, values in deliveries:
            body += _unstamp(start) + _unstamp(end) + _floats(values)
    return frame(body.encode())


def alarms_response(tank: int, stamp: str, tanks: list) -> bytes:  # type: ignore[type-arg]
    """tanks: [(tank, [alarm code, ...])]."""
    codes = {}
    for code in ALARMS:
        codes[ALARMS[code]] = code
    body = "i%s%02d%s" % (ALARMS_FN, tank, _unstamp(stamp))
    for number, alarms in tanks:
        body += "%02d%02d" % (number, len(alarms)) + "".join("%02d" % codes.get(a, a) for a in alarms)
    return frame(body.encode())


class CommandDecoder:
    """The console's side: bytes in, ("command", function, tank) or ("error", reason) out.
    A command is SOH, 'i' or 'I', three function characters and two tank digits."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inside = False

    def feed(self, chunk: bytes) -> list:  # type: ignore[type-arg]
        events = []  # type: list[tuple]  # type: ignore[type-arg]
        for byte in chunk:
            byte &= 0x7F
            if byte == SOH:
                self._inside = True
                self._buf = bytearray()
                continue
            if not self._inside:
                continue
            self._buf.append(byte)
            if len(self._buf) == 6:
                self._inside = False
                raw = bytes(self._buf)
                if raw[0:1] not in (b"i", b"I"):
                    events.append(("error", "unknown command"))
                    continue
                try:
                    events.append(("command", raw[1:4].decode(), _dec(raw[4:6])))
                except (TlsError, UnicodeError):
                    events.append(("error", "bad tank number"))
        return events
