"""Relay-board UART protocol (hal.relay_proto): CRC, framing, resync, and the reliable Link.

Sans-IO throughout: bytes in, events out, times are integer milliseconds passed in.
"""

from __future__ import annotations

import binascii
import re
import struct
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal import relay_proto as rp
from hal.crc16 import crc16_ccitt

# One example value tuple per message type, exercising the full width of each field.
Msg = tuple[int, tuple[int, ...]]

SAMPLE_VALUES: dict[int, tuple[int | bytes, ...]] = {
    rp.ACK: (0xFE,),
    rp.HEARTBEAT: (),
    rp.AUTHORIZE: (3, 0xDEADBEEF, 123456),
    rp.STOP: (2,),
    rp.QUERY: (1,),
    rp.HOST_HELLO: (rp.VERSION, 0xCAFEF00D),
    rp.STATUS: (1, rp.FLAG_RELAY | rp.FLAG_NOZZLE, 0x01020304, 77, 0xFFFFFFFF),
    rp.END: (0, 42, 1000, rp.END_PRESET_REACHED, 987654),
    rp.NOZZLE: (1, 1),
    rp.FAULT: (0, rp.FAULT_UNAUTHORISED_FLOW, 5),
    rp.BOARD_HELLO: (1, 4, 0, 0x12345678),
    rp.FW_BEGIN: (0xA5A5A5A5,),
    rp.FW_OPEN: (2, 12345, b"hal/firmware/board_core.py"),
    rp.FW_DATA: (2, 514, 24, bytes(range(24))),
    rp.FW_CLOSE: (2, 0xCBF43926),
    rp.FW_COMMIT: (7,),
    rp.FW_CONFIRM: (7,),
    rp.FW_ABORT: (7,),
    rp.FW_RESULT: (rp.FW_CLOSE, rp.FW_ERR_CRC, 2),
}


def split_frames(data: bytes) -> list[bytes]:
    """Cut a clean byte stream (as produced by encode_frame) into its frames."""
    frames = []
    i = 0
    while i < len(data):
        assert data[i] == rp.SYNC, f"stream out of sync at {i}: {data.hex()}"
        total = data[i + 1] + 4
        frames.append(data[i : i + total])
        i += total
    assert i == len(data)
    return frames


def frame_seq(frame: bytes) -> int:
    return frame[3]


def frame_type(frame: bytes) -> int:
    return frame[4]


# --- CRC ----------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1


def test_crc_of_empty_is_init() -> None:
    assert crc16_ccitt(b"") == 0xFFFF


@settings(max_examples=200)
@given(st.binary(max_size=256))
def test_crc_matches_binascii(data: bytes) -> None:
    assert crc16_ccitt(data) == binascii.crc_hqx(data, 0xFFFF)


@settings(max_examples=200)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_crc_is_incremental(a: bytes, b: bytes) -> None:
    assert crc16_ccitt(b, crc16_ccitt(a)) == crc16_ccitt(a + b)


# --- payloads and frames ------------------------------------------------------------------


def test_sample_values_cover_every_type() -> None:
    assert set(SAMPLE_VALUES) == set(rp._FORMATS)


@pytest.mark.parametrize("mtype", sorted(rp._FORMATS), ids=lambda t: f"type_{t:#04x}")
def test_frame_round_trip_every_type(mtype: int) -> None:
    values = SAMPLE_VALUES[mtype]
    payload = rp.encode_payload(mtype, values)
    fmt = rp._FORMATS[mtype]
    assert len(payload) == (struct.calcsize(fmt) if fmt else 0)
    frame = rp.encode_frame(0x37, mtype, payload)

    assert frame[0] == rp.SYNC
    assert frame[1] == rp.HEADER_LEN + len(payload)
    assert frame[2] == rp.VERSION
    assert len(frame) == 1 + 1 + frame[1] + 2
    assert int.from_bytes(frame[-2:], "big") == crc16_ccitt(frame[1:-2])

    decoder = rp.FrameDecoder()
    frames = decoder.feed(frame)
    assert frames == [(0x37, mtype, payload)]
    assert rp.decode_payload(mtype, frames[0][2]) == values
    assert decoder.rejected == 0


@settings(max_examples=200)
@given(
    seq=st.integers(0, 255),
    mtype=st.sampled_from(sorted(rp._FORMATS)),
    data=st.data(),
)
def test_frame_round_trip_random_values(seq: int, mtype: int, data: st.DataObject) -> None:
    fmt = rp._FORMATS[mtype]
    values: tuple[int | bytes, ...] = ()
    if fmt:
        # struct codes, with a byte count before `s` (fixed-width, NUL-padded fields)
        fields = re.findall(r"(\d*)([BHIs])", fmt.lstrip(">"))
        widths = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
        values = tuple(data.draw(st.binary(min_size=int(n), max_size=int(n))) if c == "s"
                       else data.draw(st.integers(0, widths[c])) for n, c in fields)
    payload = rp.encode_payload(mtype, values)
    assert rp.FrameDecoder().feed(rp.encode_frame(seq, mtype, payload)) == [(seq, mtype, payload)]
    assert rp.decode_payload(mtype, payload) == values


def test_encode_rejects_unknown_type_and_long_payload() -> None:
    with pytest.raises(rp.ProtocolError):
        rp.encode_payload(0x7F, ())
    with pytest.raises(rp.ProtocolError):
        rp.decode_payload(0x7F, b"")
    with pytest.raises(rp.ProtocolError):
        rp.encode_frame(1, rp.STATUS, bytes(rp.MAX_PAYLOAD + 1))
    # the largest payload is fine
    big = rp.encode_frame(1, rp.STATUS, bytes(rp.MAX_PAYLOAD))
    assert rp.FrameDecoder().feed(big) == [(1, rp.STATUS, bytes(rp.MAX_PAYLOAD))]


def test_decode_payload_rejects_wrong_length() -> None:
    with pytest.raises(rp.ProtocolError):
        rp.decode_payload(rp.AUTHORIZE, b"\x00" * 8)
    with pytest.raises(rp.ProtocolError):
        rp.decode_payload(rp.HEARTBEAT, b"\x00")


def test_sequence_number_is_masked_to_a_byte() -> None:
    frame = rp.encode_frame(0x1FF, rp.HEARTBEAT, b"")
    assert rp.FrameDecoder().feed(frame) == [(0xFF, rp.HEARTBEAT, b"")]


# --- FrameDecoder: resync, reassembly, corruption -----------------------------------------


def test_garbage_before_frame_is_skipped() -> None:
    frame = rp.encode_frame(5, rp.STOP, rp.encode_payload(rp.STOP, (1,)))
    decoder = rp.FrameDecoder()
    assert decoder.feed(b"\x00\x13\x37noise\xff" + frame) == [(5, rp.STOP, b"\x01")]


def test_garbage_with_false_sync_before_frame_is_skipped() -> None:
    # A stray SYNC followed by an impossible length byte must be stepped over.
    frame = rp.encode_frame(6, rp.QUERY, rp.encode_payload(rp.QUERY, (0,)))
    decoder = rp.FrameDecoder()
    assert decoder.feed(bytes([rp.SYNC, 0x00, rp.SYNC, 0xFF]) + frame) == [(6, rp.QUERY, b"\x00")]
    assert decoder.rejected == 2


def test_frame_split_into_single_bytes_reassembles() -> None:
    frames = [
        rp.encode_frame(1, rp.AUTHORIZE, rp.encode_payload(rp.AUTHORIZE, (1, 99, 500))),
        rp.encode_frame(2, rp.HEARTBEAT, b""),
    ]
    stream = b"".join(frames)
    decoder = rp.FrameDecoder()
    out = []
    for i in range(len(stream)):
        got = decoder.feed(stream[i : i + 1])
        if i not in (len(frames[0]) - 1, len(stream) - 1):
            assert got == [], f"delivered early at byte {i}"
        out += got
    assert out == [
        (1, rp.AUTHORIZE, rp.encode_payload(rp.AUTHORIZE, (1, 99, 500))),
        (2, rp.HEARTBEAT, b""),
    ]
    assert decoder.rejected == 0


def test_several_frames_in_one_chunk() -> None:
    stream = b"".join(rp.encode_frame(s, rp.QUERY, bytes([s])) for s in range(1, 6))
    assert rp.FrameDecoder().feed(stream) == [(s, rp.QUERY, bytes([s])) for s in range(1, 6)]


# A payload free of SYNC bytes so that only the flipped bit is under test.
_AUTH_PAYLOAD = rp.encode_payload(rp.AUTHORIZE, (1, 0x01020304, 1000))
_AUTH_FRAME = rp.encode_frame(7, rp.AUTHORIZE, _AUTH_PAYLOAD)
_GOOD_FRAME = rp.encode_frame(8, rp.STOP, rp.encode_payload(rp.STOP, (1,)))


@pytest.mark.parametrize("position", [3, 6, 9, len(_AUTH_FRAME) - 2, len(_AUTH_FRAME) - 1])
def test_bit_flip_is_rejected_and_next_frame_decodes(position: int) -> None:
    assert rp.SYNC not in _AUTH_FRAME[1:]
    corrupt = bytearray(_AUTH_FRAME)
    corrupt[position] ^= 0x04
    decoder = rp.FrameDecoder()
    assert decoder.feed(bytes(corrupt)) == []
    assert decoder.rejected == 1
    assert decoder.feed(_GOOD_FRAME) == [(8, rp.STOP, b"\x01")]
    assert decoder.rejected == 1


def test_wrong_version_is_rejected() -> None:
    body = bytes([rp.HEADER_LEN, rp.VERSION + 1, 1, rp.HEARTBEAT])
    crc = crc16_ccitt(body)
    bad = bytes([rp.SYNC]) + body + bytes([crc >> 8, crc & 0xFF])
    decoder = rp.FrameDecoder()
    assert decoder.feed(bad + _GOOD_FRAME) == [(8, rp.STOP, b"\x01")]
    assert decoder.rejected == 1


@pytest.mark.parametrize("bit", range(len(_AUTH_FRAME) * 8))
def test_any_single_bit_flip_never_delivers_and_stream_recovers(bit: int) -> None:
    """Every single-bit error: the corrupt frame is never delivered, and the good frame that
    follows is delivered once further traffic has pushed out whatever the decoder is
    waiting for (a corrupted LEN byte can make it wait for up to a maximum frame)."""
    corrupt = bytearray(_AUTH_FRAME)
    corrupt[bit // 8] ^= 1 << (bit % 8)
    heartbeat = rp.encode_frame(9, rp.HEARTBEAT, b"")
    filler = heartbeat * 6  # > the longest possible frame
    decoder = rp.FrameDecoder()
    out = decoder.feed(bytes(corrupt))
    out += decoder.feed(_GOOD_FRAME)
    out += decoder.feed(filler)
    assert (7, rp.AUTHORIZE, _AUTH_PAYLOAD) not in out
    assert out[0] == (8, rp.STOP, b"\x01")
    assert out[1:] == [(9, rp.HEARTBEAT, b"")] * (len(out) - 1)
    assert len(out) >= 2


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_decoder_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    decoder = rp.FrameDecoder()
    for seq, mtype, payload in decoder.feed(data):
        assert 0 <= seq <= 255 and 0 <= mtype <= 255
        assert len(payload) <= rp.MAX_PAYLOAD
    # still usable afterwards: a good frame after enough filler always comes through
    out = decoder.feed(bytes(40) + _GOOD_FRAME)
    assert out[-1:] == [(8, rp.STOP, b"\x01")]


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_decoder_chunking_does_not_matter(chunks: list[bytes]) -> None:
    whole = rp.FrameDecoder()
    pieces = rp.FrameDecoder()
    expected = whole.feed(b"".join(chunks))
    got = []
    for chunk in chunks:
        got += pieces.feed(chunk)
    assert got == expected
    assert pieces.rejected == whole.rejected


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(0, 10_000))
def test_link_feed_never_raises_on_arbitrary_bytes(data: bytes, now: int) -> None:
    link = rp.Link()
    delivered = link.feed(data, now)
    for mtype, values in delivered:
        assert mtype in rp._FORMATS and mtype != rp.ACK
        assert isinstance(values, tuple)
    link.poll(now + 1000)
    link.take_output()


@settings(max_examples=200)
@given(st.lists(st.sampled_from(sorted(rp._FORMATS)), max_size=8), st.binary(max_size=64))
def test_link_feed_never_raises_on_corrupted_valid_traffic(types: list[int], noise: bytes) -> None:
    stream = b"".join(
        rp.encode_frame(i + 1, t, rp.encode_payload(t, SAMPLE_VALUES[t])) for i, t in enumerate(types)
    )
    mixed = bytearray(stream)
    for i, b in enumerate(noise):
        if mixed:
            mixed[(i * 7 + b) % len(mixed)] ^= b
    link = rp.Link()
    link.feed(bytes(mixed), 0)
    link.feed(bytes(noise), 1)


# --- Link -----------------------------------------------------------------------------------


def transfer(src: rp.Link, dst: rp.Link, now: int, drop: Callable[[bytes], bool] | None = None) -> list[Msg]:
    """Move src's pending output to dst, frame by frame, skipping frames `drop` selects."""
    delivered = []
    for frame in split_frames(src.take_output()):
        if drop is not None and drop(frame):
            continue
        delivered += dst.feed(frame, now)
    return delivered


def test_link_pair_delivers_and_acks() -> None:
    a, b = rp.Link(), rp.Link()
    a.send(rp.AUTHORIZE, (1, 5, 100), 0)
    assert a.in_flight == 1
    assert a.next_deadline() == a.retry_ms
    assert transfer(a, b, 10) == [(rp.AUTHORIZE, (1, 5, 100))]
    acks = split_frames(b.take_output())
    assert [frame_type(f) for f in acks] == [rp.ACK]
    assert a.feed(acks[0], 20) == []
    assert a.in_flight == 0
    assert a.next_deadline() == -1
    assert a.poll(10_000) == []
    assert a.take_output() == b""


def test_unreliable_messages_are_not_acked_or_retransmitted() -> None:
    a, b = rp.Link(), rp.Link()
    a.send(rp.HEARTBEAT, (), 0)
    a.send(rp.STATUS, SAMPLE_VALUES[rp.STATUS], 0)
    assert a.in_flight == 0
    assert transfer(a, b, 0) == [(rp.HEARTBEAT, ()), (rp.STATUS, SAMPLE_VALUES[rp.STATUS])]
    assert b.take_output() == b""
    assert a.poll(10_000) == []
    assert a.take_output() == b""


class Dropper:
    """Deterministic loss: drop the n-th frame (1-based) whenever n % every == 0."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.count = 0
        self.dropped = 0

    def __call__(self, frame: bytes) -> bool:
        self.count += 1
        if self.count % self.every == 0:
            self.dropped += 1
            return True
        return False


def run_pair(
    a: rp.Link, b: rp.Link, drop_ab: Callable[[bytes], bool], drop_ba: Callable[[bytes], bool],
    until: int, step: int = 20,
) -> tuple[list[Msg], list[Msg], list[Msg], list[Msg]]:
    """Exchange traffic both ways until `until` ms; returns (to_b, to_a, lost_a, lost_b)."""
    to_b: list[Msg] = []
    to_a: list[Msg] = []
    lost_a: list[Msg] = []
    lost_b: list[Msg] = []
    for now in range(0, until, step):
        lost_a += a.poll(now)
        lost_b += b.poll(now)
        to_b += transfer(a, b, now, drop_ab)
        to_a += transfer(b, a, now, drop_ba)
    return to_b, to_a, lost_a, lost_b


def test_lossy_channel_delivers_each_message_exactly_once() -> None:
    a = rp.Link(retry_ms=100, max_tries=10)
    b = rp.Link(retry_ms=100, max_tries=10)
    sent_ab: list[Msg] = [(rp.AUTHORIZE, (i % 4, 1000 + i, 10 * i + 1)) for i in range(20)]
    sent_ba: list[Msg] = [(rp.END, (i % 4, 2000 + i, i, rp.END_HOST_STOP, i)) for i in range(12)]
    for mtype, values in sent_ab:
        a.send(mtype, values, 0)
    for mtype, values in sent_ba:
        b.send(mtype, values, 0)
    drop_ab, drop_ba = Dropper(3), Dropper(4)
    to_b, to_a, lost_a, lost_b = run_pair(a, b, drop_ab, drop_ba, until=5000)

    assert drop_ab.dropped > 0 and drop_ba.dropped > 0
    assert Counter(to_b) == Counter(sent_ab)
    assert Counter(to_a) == Counter(sent_ba)
    assert lost_a == [] and lost_b == []
    assert a.in_flight == 0 and b.in_flight == 0


@settings(max_examples=50, deadline=None)
@given(drops=st.lists(st.booleans(), min_size=1, max_size=64), n=st.integers(1, 12))
def test_lossy_channel_random_pattern(drops: list[bool], n: int) -> None:
    """Whatever (bounded) pattern of loss, every message arrives exactly once."""
    a = rp.Link(retry_ms=50, max_tries=100)
    b = rp.Link(retry_ms=50, max_tries=100)
    pattern = iter(drops)

    def drop(frame: bytes) -> bool:
        return next(pattern, False)  # loss stops once the pattern is used up

    sent = [(rp.STOP, (i,)) for i in range(n)]
    for mtype, values in sent:
        a.send(mtype, values, 0)
    to_b, _, lost_a, _ = run_pair(a, b, drop, drop, until=4000)
    assert Counter(to_b) == Counter(sent)
    assert lost_a == []
    assert a.in_flight == 0


def test_retransmission_after_lost_ack_is_delivered_once() -> None:
    a, b = rp.Link(retry_ms=100), rp.Link()
    a.send(rp.STOP, (2,), 0)
    first = a.take_output()
    assert b.feed(first, 5) == [(rp.STOP, (2,))]
    b.take_output()  # the ACK is lost

    assert a.poll(99) == []
    assert a.take_output() == b""
    assert a.poll(100) == []
    again = a.take_output()
    assert again == first  # same frame, same sequence number

    assert b.feed(again, 105) == []  # duplicate: not delivered again...
    ack = b.take_output()
    assert [frame_type(f) for f in split_frames(ack)] == [rp.ACK]  # ...but acknowledged
    a.feed(ack, 110)
    assert a.in_flight == 0


def test_duplicate_detection_does_not_drop_new_messages() -> None:
    a, b = rp.Link(), rp.Link()
    delivered = []
    for i in range(40):
        a.send(rp.QUERY, (i,), i)
        delivered += transfer(a, b, i)
        transfer(b, a, i)
    assert delivered == [(rp.QUERY, (i,)) for i in range(40)]


def test_message_reported_lost_after_max_tries() -> None:
    a = rp.Link(retry_ms=100, max_tries=3)
    a.send(rp.AUTHORIZE, (0, 9, 50), 1000)
    transmissions = len(split_frames(a.take_output()))
    lost: list[Msg] = []
    for now in range(1000, 1600, 10):
        lost += a.poll(now)
        transmissions += len(split_frames(a.take_output()))
        if lost:
            assert now == 1300
            break
    assert lost == [(rp.AUTHORIZE, (0, 9, 50))]
    assert transmissions == 3
    assert a.in_flight == 0
    assert a.next_deadline() == -1
    assert a.poll(5000) == []
    assert a.take_output() == b""


def test_retransmissions_follow_retry_interval() -> None:
    a = rp.Link(retry_ms=150, max_tries=5)
    a.send(rp.STOP, (0,), 0)
    a.take_output()
    times = []
    for now in range(0, 1000):
        a.poll(now)
        if a.take_output():
            times.append(now)
    assert times == [150, 300, 450, 600]


def test_window_limits_in_flight_and_queue_drains_on_ack() -> None:
    a, b = rp.Link(window=2), rp.Link()
    sent = [(rp.STOP, (i,)) for i in range(5)]
    for mtype, values in sent:
        a.send(mtype, values, 0)
    assert a.in_flight == 5
    first = split_frames(a.take_output())
    assert len(first) == 2

    # unreliable traffic is not held back by a full window
    a.send(rp.HEARTBEAT, (), 0)
    assert [frame_type(f) for f in split_frames(a.take_output())] == [rp.HEARTBEAT]

    delivered = b.feed(first[0], 1)
    assert delivered == [sent[0]]
    a.feed(b.take_output(), 2)  # one ACK -> one queued message goes out
    nxt = split_frames(a.take_output())
    assert len(nxt) == 1
    assert a.in_flight == 4

    delivered += b.feed(first[1] + nxt[0], 3)
    a.feed(b.take_output(), 4)
    delivered += transfer(a, b, 5)
    a.feed(b.take_output(), 6)
    delivered += transfer(a, b, 7)
    a.feed(b.take_output(), 8)
    assert delivered == sent
    assert a.in_flight == 0
    assert a.take_output() == b""


def test_window_refills_when_a_message_is_lost() -> None:
    a = rp.Link(window=1, retry_ms=10, max_tries=1)
    a.send(rp.STOP, (0,), 0)
    a.send(rp.STOP, (1,), 0)
    assert len(split_frames(a.take_output())) == 1
    assert a.poll(10) == [(rp.STOP, (0,))]
    out = split_frames(a.take_output())
    assert len(out) == 1
    assert rp.decode_payload(rp.STOP, out[0][5:-2]) == (1,)
    assert a.in_flight == 1


def test_stale_ack_is_ignored() -> None:
    a = rp.Link()
    a.send(rp.STOP, (0,), 0)
    a.take_output()
    a.feed(rp.encode_frame(1, rp.ACK, bytes([0x77])), 1)  # nothing pending with seq 0x77
    assert a.in_flight == 1


@pytest.mark.parametrize("hello", [rp.HOST_HELLO, rp.BOARD_HELLO])
def test_hello_resets_duplicate_filter_for_rebooted_peer(hello: int) -> None:
    b = rp.Link()
    old = rp.Link()
    msgs = [(rp.STOP, (i,)) for i in range(3)]
    for mtype, values in msgs:
        old.send(mtype, values, 0)
    assert transfer(old, b, 0) == msgs
    transfer(b, old, 0)

    # Without a HELLO a restarted peer's fresh messages collide with the filter...
    silent = rp.Link()
    silent.send(rp.STOP, (9,), 10)
    assert transfer(silent, b, 10) == []
    # ...but a rebooted peer announcing itself with HELLO is heard from the start.
    rebooted = rp.Link()
    hello_values = rp.decode_payload(hello, rp.encode_payload(hello, SAMPLE_VALUES[hello]))
    rebooted.send(hello, hello_values, 20)
    for i in range(3):
        rebooted.send(rp.STOP, (10 + i,), 20)
    assert transfer(rebooted, b, 20) == [(hello, hello_values)] + [(rp.STOP, (10 + i,)) for i in range(3)]
    transfer(b, rebooted, 20)
    assert rebooted.in_flight == 0


def test_unknown_type_counted_invalid_and_not_acked() -> None:
    link = rp.Link()
    assert link.feed(rp.encode_frame(1, 0x7F, b""), 0) == []
    assert link.invalid == 1
    assert link.rejected == 0
    assert link.take_output() == b""


@pytest.mark.parametrize(
    ("mtype", "payload"),
    [
        (rp.AUTHORIZE, b"\x00\x01"),
        (rp.HEARTBEAT, b"\x00"),
        (rp.ACK, b""),
        (rp.END, bytes(struct.calcsize(rp._FORMATS[rp.END]) + 1)),
    ],
)
def test_bad_payload_length_counted_invalid(mtype: int, payload: bytes) -> None:
    link = rp.Link()
    good = rp.encode_frame(2, rp.QUERY, b"\x01")
    assert link.feed(rp.encode_frame(1, mtype, payload) + good, 0) == [(rp.QUERY, (1,))]
    assert link.invalid == 1
    assert link.rejected == 0
    assert link.take_output() == b""  # an invalid reliable message is not acknowledged


def test_corrupt_frame_counted_rejected_on_link() -> None:
    link = rp.Link()
    corrupt = bytearray(_AUTH_FRAME)
    corrupt[-1] ^= 0x01
    assert link.feed(bytes(corrupt), 0) == []
    assert link.rejected == 1
    assert link.invalid == 0
    assert link.take_output() == b""


def test_heartbeats_do_not_consume_reliable_sequence_numbers() -> None:
    a, b = rp.Link(), rp.Link()
    a.send(rp.STOP, (1,), 0)
    first = split_frames(a.take_output())
    assert b.feed(first[0], 0) == [(rp.STOP, (1,))]
    a.feed(b.take_output(), 0)
    for i in range(600):  # two minutes of heartbeats at 200 ms
        a.send(rp.HEARTBEAT, (), i)
        transfer(a, b, i)
    a.send(rp.STOP, (2,), 700)
    second = split_frames(a.take_output())
    assert frame_seq(second[0]) == frame_seq(first[0]) + 1
    assert b.feed(second[0], 700) == [(rp.STOP, (2,))]


def test_reliable_messages_past_sequence_wrap_are_each_delivered_once() -> None:
    a, b = rp.Link(), rp.Link()
    delivered: list[Msg] = []
    for i in range(700):  # the reliable counter wraps more than twice
        a.send(rp.STOP, (i % 256,), i)
        a.send(rp.HEARTBEAT, (), i)
        delivered += transfer(a, b, i)
        transfer(b, a, i)
    assert [m for m in delivered if m[0] == rp.STOP] == [(rp.STOP, (i % 256,)) for i in range(700)]
    assert a.in_flight == 0


def test_retransmitted_hello_is_not_delivered_twice() -> None:
    a, b = rp.Link(), rp.Link()
    a.send(rp.HOST_HELLO, (rp.VERSION, 7), 0)
    assert transfer(a, b, 0) == [(rp.HOST_HELLO, (rp.VERSION, 7))]
    b.take_output()  # the ACK is lost
    a.send(rp.AUTHORIZE, (0, 1, 100), 1)
    assert transfer(a, b, 1) == [(rp.AUTHORIZE, (0, 1, 100))]
    a.poll(a.retry_ms + 1)  # the HELLO goes out again
    assert transfer(a, b, a.retry_ms + 1) == []
    transfer(b, a, a.retry_ms + 1)
    assert a.in_flight == 0
    # a different boot id is a new incarnation and is heard
    c = rp.Link()
    c.send(rp.HOST_HELLO, (rp.VERSION, 8), 500)
    assert transfer(c, b, 500) == [(rp.HOST_HELLO, (rp.VERSION, 8))]
