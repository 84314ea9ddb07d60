"""ECR codec: layout vectors, round trips and fuzzing (hypothesis), the ACK/NAK link and
the host's timers, all on plain bytes with a caller-driven clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hal import ecr_proto as ecr

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


messages = st.builds(
    ecr.Message,
    trans_type=st.sampled_from(ecr.TYPES),
    amount_idr=st.integers(0, 9_999_999_999),
    ecr_ref=PRINTABLE.map(lambda s: s[:12]),
    invoice=digits(6),
    approval=PRINTABLE.map(lambda s: s[:6]),
    rrn=PRINTABLE.map(lambda s: s[:12]),
    response=st.sampled_from(["", "00", "51", "55", "05", "25"]),
    tid=PRINTABLE.map(lambda s: s[:8]),
    mid=PRINTABLE,
    card_type=st.sampled_from(["", "DEBIT", "CREDIT", "QRIS"]),
    date=digits(6),
    time=digits(6),
)


def sale(amount: int = 150_000, ref: str = "TX000001") -> ecr.Message:
    return ecr.Message(ecr.SALE, amount, ref, date="261123", time="101500")


def test_layout_vector() -> None:
    frame = ecr.encode_message(sale())
    assert frame[0] == ecr.STX and frame[1:3] == b"\x00\x99" and frame[-2] == ecr.ETX
    data = frame[3:-2]
    assert len(data) == ecr.DATA_LEN
    assert data[:4] == b"0101"
    assert data[4:16] == b"000015000000"  # Rp 150.000 with two implied decimals
    assert data[16:28] == b"TX000001    "
    lrc = 0
    for byte in frame[1:-1]:
        lrc ^= byte
    assert frame[-1] == lrc


def test_field_widths_add_up() -> None:
    assert sum(width for _, width, _ in ecr.FIELDS) == ecr.DATA_LEN


@given(messages)
def test_round_trip(msg: ecr.Message) -> None:
    frame = ecr.encode_message(msg)
    events = ecr.FrameDecoder().feed(frame, 0)
    assert [e[0] for e in events] == ["frame"]
    assert ecr.decode_data(events[0][1]) == msg


@given(messages, st.integers(1, 98))
def test_split_anywhere_reassembles(msg: ecr.Message, cut: int) -> None:
    frame = ecr.encode_message(msg)
    decoder = ecr.FrameDecoder()
    assert decoder.feed(frame[:cut], 0) == []
    assert decoder.feed(frame[cut:], 1) == [("frame", frame[3:-2])]


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_garbage_never_crashes_nor_yields_a_bad_frame(data: bytes) -> None:
    link = ecr.Link()
    for event in link.feed(data, 0):
        assert event[0] in ("message", "invalid", "delivered", "send_failed")
    for event in ecr.FrameDecoder().feed(data, 0):
        if event[0] == "frame":
            # whatever it delivers had a correct LRC in the input
            body = ecr._bcd(len(event[1])) + event[1] + bytes([ecr.ETX])
            assert bytes([ecr.STX]) + body + bytes([ecr.lrc(body)]) in data


@given(messages, st.integers(0, 101), st.integers(0, 7))
def test_any_bit_flip_is_refused(msg: ecr.Message, pos: int, bit: int) -> None:
    frame = bytearray(ecr.encode_message(msg))
    index = 1 + pos  # any byte after STX
    frame[index] ^= 1 << bit
    link = ecr.Link()
    events = link.feed(bytes(frame), 0)
    link.feed(b"", 10_000)
    assert not [e for e in events if e[0] == "message" and e[1] == msg]


@given(st.binary(max_size=120), messages)
def test_resynchronises_after_noise(noise: bytes, msg: ecr.Message) -> None:
    decoder = ecr.FrameDecoder()
    decoder.feed(noise, 0)
    frame = ecr.encode_message(msg)
    events = decoder.feed(frame, 10_000)  # after the inter-byte gap any partial frame is gone
    assert ("frame", frame[3:-2]) in events


def test_bad_fields_rejected_on_encode_and_decode() -> None:
    for bad in (ecr.Message("99"), ecr.Message(ecr.SALE, -1), ecr.Message(ecr.SALE, invoice="12a456"),
                ecr.Message(ecr.SALE, ecr_ref="X" * 13)):
        try:
            ecr.encode_message(bad)
        except ecr.EcrError:
            continue
        raise AssertionError(f"{bad} encoded")
    data = bytearray(ecr.encode_data(sale()))
    data[15] = ord("5")  # 50 cents: not a whole Rupiah
    link = ecr.Link()
    events = link.feed(ecr.encode_frame(bytes(data)), 0)
    assert events[0][0] == "invalid" and link.take_output() == bytes([ecr.NAK])


def test_ack_nak_and_retransmission_limit() -> None:
    link = ecr.Link(ack_timeout_ms=2000, max_retries=3)
    link.send(sale(), 0)
    frame = link.take_output()
    assert link.feed(bytes([ecr.NAK]), 10) == [] and link.take_output() == frame  # retry 1
    assert link.poll(2009) == [] and link.take_output() == b""  # not yet
    assert link.poll(2010) == [] and link.take_output() == frame  # retry 2 on ACK timeout
    assert link.feed(bytes([ecr.NAK]), 2100) == [] and link.take_output() == frame  # retry 3
    assert link.feed(bytes([ecr.NAK]), 2200) == [("send_failed", "nak")]
    assert link.take_output() == b"" and not link.busy


def test_duplicate_frame_acked_not_delivered_twice() -> None:
    a, b = ecr.Link(), ecr.Link()
    a.send(sale(), 0)
    frame = a.take_output()
    assert b.feed(frame, 0) == [("message", sale())]
    assert b.take_output() == bytes([ecr.ACK])
    assert b.feed(frame, 2000) == []  # our ACK was lost; the peer repeated
    assert b.take_output() == bytes([ecr.ACK])


def test_host_response_and_timeouts() -> None:
    host = ecr.Host(ack_timeout_ms=100, max_retries=1, response_timeout_ms=5000)
    terminal = ecr.Link()
    host.send(sale(ref="A1"), 0)
    got = terminal.feed(host.take_output(), 0)
    assert got == [("message", sale(ref="A1"))]
    assert host.feed(terminal.take_output(), 1) == []
    stray = ecr.Message(ecr.SALE, 1, "OLD", response="00")
    terminal.send(stray, 2)
    assert host.feed(terminal.take_output(), 2) == [("stray", stray)]
    terminal.feed(host.take_output(), 2)  # the ACK of the stray answer
    assert host.poll(5000) == []
    assert host.poll(5001) == [("timeout", sale(ref="A1"))]
    host.send(sale(ref="A2"), 6000)
    host.take_output()
    host.poll(6100)
    host.take_output()
    assert host.poll(6200) == [("no_ack", sale(ref="A2"))]
    host.send(ecr.Message(ecr.INQUIRY), 7000)
    terminal.feed(host.take_output(), 7000)
    host.feed(terminal.take_output(), 7000)
    answer = ecr.Message(ecr.SALE, 10, "A2", response="00")
    terminal.send(answer, 7001)
    assert host.feed(terminal.take_output(), 7001) == [("response", ecr.Message(ecr.INQUIRY), answer)]


def test_inquiry_answer_identical_to_the_last_answer_is_delivered() -> None:
    host = ecr.Host(ack_timeout_ms=100)
    terminal = ecr.Link()
    answer = ecr.Message(ecr.VOID, 500, "V1", "000003", response="00")
    host.send(ecr.Message(ecr.VOID, 500, "V1", "000002"), 0)
    terminal.feed(host.take_output(), 0)
    host.feed(terminal.take_output(), 0)
    terminal.send(answer, 1)
    assert host.feed(terminal.take_output(), 1)[0][0] == "response"
    terminal.feed(host.take_output(), 1)
    host.send(ecr.Message(ecr.INQUIRY), 2)
    terminal.feed(host.take_output(), 2)
    host.feed(terminal.take_output(), 2)
    terminal.send(answer, 3)  # the terminal repeats its last record, byte for byte
    assert host.feed(terminal.take_output(), 3) == [("response", ecr.Message(ecr.INQUIRY), answer)]
