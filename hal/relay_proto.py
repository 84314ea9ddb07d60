"""Relay-board UART protocol: a sans-IO codec shared by the Pi driver, the simulator and the firmware.

Frame (all integers big-endian):

    SYNC(0xA5) LEN VER SEQ TYPE PAYLOAD... CRC16

LEN counts VER+SEQ+TYPE+PAYLOAD; the CRC-16/CCITT-FALSE covers LEN through PAYLOAD.
Reliable messages (RELIABLE) carry sequence numbers 1..255 of their own, are acknowledged
with ACK(seq) and retransmitted until acknowledged or `max_tries` is spent; the receiver
drops duplicates by sequence number. Unreliable frames and ACKs carry sequence 0, so
heartbeats never wrap the reliable numbering. HELLO announces a (re)boot of either side
with a boot id: a new boot id resets the peer's duplicate filter, a repeated one is a
retransmission and is not delivered again.

Written in the MicroPython-compatible subset: struct, time-free, no typing at run time.
Times are integer milliseconds passed in by the caller.
"""

import struct

from hal.crc16 import crc16_ccitt

SYNC = 0xA5
VERSION = 1
MAX_PAYLOAD = 32
HEADER_LEN = 3  # VER SEQ TYPE

# Host -> board
ACK = 0x00
HEARTBEAT = 0x01
AUTHORIZE = 0x02
STOP = 0x03
QUERY = 0x04
HOST_HELLO = 0x05
# Firmware update (hal/fw_update.py, hal/firmware/fw_update.py)
FW_BEGIN = 0x06
FW_OPEN = 0x07
FW_DATA = 0x08
FW_CLOSE = 0x09
FW_COMMIT = 0x0A
FW_CONFIRM = 0x0B
FW_ABORT = 0x0C
# Board -> host
STATUS = 0x81
END = 0x82
NOZZLE = 0x83
FAULT = 0x84
BOARD_HELLO = 0x85
FW_RESULT = 0x86

FW_TYPES = (FW_BEGIN, FW_OPEN, FW_DATA, FW_CLOSE, FW_COMMIT, FW_CONFIRM, FW_ABORT)
RELIABLE = (AUTHORIZE, STOP, HOST_HELLO, END, NOZZLE, FAULT, BOARD_HELLO, FW_RESULT) + FW_TYPES  # noqa: RUF005 (MicroPython)
FW_BLOCK = 24  # file bytes per FW_DATA frame
FW_NAME = 26  # longest flash path, bytes
HELLOS = (HOST_HELLO, BOARD_HELLO)

# STATUS flags
FLAG_RELAY = 0x01
FLAG_NOZZLE = 0x02
FLAG_ESTOP = 0x04
FLAG_FAULT = 0x08
FLAG_ACTIVE = 0x10  # a fill is running or settling: its END is still to come

# END reasons
END_NOZZLE_HUNG = 1
END_PRESET_REACHED = 2
END_HOST_STOP = 3
END_HEARTBEAT_LOST = 4
END_ESTOP = 5
END_REJECTED = 6
END_REASONS = {
    END_NOZZLE_HUNG: "nozzle_hung",
    END_PRESET_REACHED: "preset_reached",
    END_HOST_STOP: "host_stop",
    END_HEARTBEAT_LOST: "heartbeat_lost",
    END_ESTOP: "estop",
    END_REJECTED: "rejected",
}

# FAULT codes
FAULT_UNAUTHORISED_FLOW = 1  # pulses with the relay open: stuck relay or tampering

_FORMATS = {
    ACK: ">B",
    HEARTBEAT: "",
    AUTHORIZE: ">BII",  # pump, auth_id, preset_pulses
    STOP: ">B",  # pump
    QUERY: ">B",  # pump
    HOST_HELLO: ">BI",  # protocol version, boot id
    STATUS: ">BBIII",  # pump, flags, auth_id, pulses, totaliser pulses
    END: ">BIIBI",  # pump, auth_id, pulses, reason, totaliser pulses
    NOZZLE: ">BB",  # pump, up
    FAULT: ">BBI",  # pump, code, pulses
    BOARD_HELLO: ">BBBI",  # firmware version, pump count, flags, boot id
    FW_BEGIN: ">I",  # session
    FW_OPEN: ">BI26s",  # file index, size, flash path (NUL padded)
    FW_DATA: ">BHB24s",  # file index, block number, length, bytes (padded)
    FW_CLOSE: ">BI",  # file index, CRC-32 of the whole file
    FW_COMMIT: ">I",  # session
    FW_CONFIRM: ">I",  # session
    FW_ABORT: ">I",  # session
    FW_RESULT: ">BBI",  # request type, code (FW_OK ...), detail
}

# FW_RESULT codes
FW_OK = 0
FW_ERR_STATE = 1
FW_ERR_SIZE = 2
FW_ERR_CRC = 3
FW_ERR_IO = 4
FW_ERR_NAME = 5


class ProtocolError(ValueError):
    pass


def encode_payload(mtype: int, values: tuple) -> bytes:  # type: ignore[type-arg]
    fmt = _FORMATS.get(mtype)
    if fmt is None:
        raise ProtocolError("unknown message type %d" % mtype)
    if not fmt:
        return b""
    return struct.pack(fmt, *values)


def decode_payload(mtype: int, payload: bytes) -> tuple:  # type: ignore[type-arg]
    fmt = _FORMATS.get(mtype)
    if fmt is None:
        raise ProtocolError("unknown message type %d" % mtype)
    if not fmt:
        if payload:
            raise ProtocolError("unexpected payload for type %d" % mtype)
        return ()
    if len(payload) != struct.calcsize(fmt):
        raise ProtocolError("bad payload length %d for type %d" % (len(payload), mtype))
    return struct.unpack(fmt, payload)


def encode_frame(seq: int, mtype: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("payload too long")
    body = bytes([HEADER_LEN + len(payload), VERSION, seq & 0xFF, mtype]) + payload
    crc = crc16_ccitt(body)
    return bytes([SYNC]) + body + bytes([crc >> 8, crc & 0xFF])


class FrameDecoder:
    """Bytes in, (seq, type, payload) out. Resynchronises on garbage; never raises on input."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.rejected = 0  # frames dropped for bad CRC, length or version

    def feed(self, data: bytes) -> list:  # type: ignore[type-arg]
        self._buf.extend(data)
        frames = []
        buf = self._buf
        while True:
            start = buf.find(bytes([SYNC]))
            if start < 0:
                buf[:] = b""
                break
            if start:
                buf[:] = buf[start:]
            if len(buf) < 2:
                break
            length = buf[1]
            bad_version = len(buf) >= 3 and buf[2] != VERSION  # reject early, do not wait for LEN bytes
            if length < HEADER_LEN or length > HEADER_LEN + MAX_PAYLOAD or bad_version:
                self.rejected += 1
                buf[:] = buf[1:]
                continue
            total = 1 + 1 + length + 2
            if len(buf) < total:
                break
            body = bytes(buf[1 : 2 + length])
            crc = (buf[2 + length] << 8) | buf[3 + length]
            if crc16_ccitt(body) != crc or body[1] != VERSION:
                self.rejected += 1
                buf[:] = buf[1:]
                continue
            frames.append((body[2], body[3], body[4:]))
            buf[:] = buf[total:]
        return frames


class Link:
    """Reliable, ordered-enough message link over a byte stream. Sans-IO.

    `send` queues a message; `feed` consumes received bytes and returns delivered
    messages as (type, values); `poll` retransmits and returns messages given up on.
    Bytes to write are collected with `take_output`.
    """

    def __init__(self, retry_ms: int = 150, max_tries: int = 5, window: int = 8) -> None:
        self.retry_ms = retry_ms
        self.max_tries = max_tries
        self.window = window
        self._decoder = FrameDecoder()
        self._seq = 0
        # seq -> [frame, deadline, tries, type, values]
        self._pending: dict[int, list] = {}  # type: ignore[type-arg]
        # (type, values) queued while the window is full
        self._waiting: list = []  # type: ignore[type-arg]
        self._recent = [-1] * 32  # sequence numbers of recently delivered reliable frames
        self._recent_pos = 0
        self._peer_boot = -1  # boot id of the peer's last HELLO
        self._out = bytearray()
        self.invalid = 0  # well-framed messages whose payload did not decode

    @property
    def rejected(self) -> int:
        return self._decoder.rejected

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self._waiting)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        if self._seq == 0:
            self._seq = 1
        return self._seq

    def send(self, mtype: int, values: tuple, now: int) -> None:  # type: ignore[type-arg]
        payload = encode_payload(mtype, values)
        if mtype not in RELIABLE:
            self._out.extend(encode_frame(0, mtype, payload))
            return
        if len(self._pending) >= self.window:
            self._waiting.append((mtype, values))
            return
        self._transmit(mtype, values, payload, now)

    def _transmit(self, mtype: int, values: tuple, payload: bytes, now: int) -> None:  # type: ignore[type-arg]
        seq = self._next_seq()
        frame = encode_frame(seq, mtype, payload)
        self._pending[seq] = [frame, now + self.retry_ms, 1, mtype, values]
        self._out.extend(frame)

    def feed(self, data: bytes, now: int) -> list:  # type: ignore[type-arg]
        delivered = []
        for seq, mtype, payload in self._decoder.feed(data):
            try:
                values = decode_payload(mtype, payload)
            except ProtocolError:
                self.invalid += 1
                continue
            if mtype == ACK:
                entry = self._pending.pop(values[0], None)
                if entry is not None:
                    self._fill_window(now)
                continue
            if mtype in RELIABLE:
                self._out.extend(encode_frame(0, ACK, bytes([seq])))
                if mtype in HELLOS:
                    if values[-1] == self._peer_boot:
                        continue  # the same HELLO again: its ACK was lost
                    self._peer_boot = values[-1]
                    self._recent = [-1] * len(self._recent)
                elif seq in self._recent:
                    continue  # a retransmission of something already delivered
                self._recent[self._recent_pos] = seq
                self._recent_pos = (self._recent_pos + 1) % len(self._recent)
            delivered.append((mtype, values))
        return delivered

    def _fill_window(self, now: int) -> None:
        while self._waiting and len(self._pending) < self.window:
            mtype, values = self._waiting.pop(0)
            self._transmit(mtype, values, encode_payload(mtype, values), now)

    def poll(self, now: int) -> list:  # type: ignore[type-arg]
        lost = []
        for seq in list(self._pending):
            entry = self._pending[seq]
            if now < entry[1]:
                continue
            if entry[2] >= self.max_tries:
                del self._pending[seq]
                lost.append((entry[3], entry[4]))
                continue
            entry[1] = now + self.retry_ms
            entry[2] += 1
            self._out.extend(entry[0])
        if lost:
            self._fill_window(now)
        return lost

    def next_deadline(self) -> int:
        """Earliest retransmission time in ms, or -1 when nothing is pending."""
        deadline = -1
        for entry in self._pending.values():
            if deadline < 0 or entry[1] < deadline:
                deadline = entry[1]
        return deadline

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out = bytearray()
        return out
