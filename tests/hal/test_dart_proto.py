"""Wayne DART codec: the frame captured from a real pump, CRC-16/ARC, FA escaping, the
transactions both ways, and garbage that must be rejected without raising."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal import dart_proto as d

CAPTURED_STATUS_REQUEST = bytes.fromhex("50300101009f5c03fa")  # controller -> pump 0x50


def test_captured_status_request_is_reproduced_byte_for_byte() -> None:
    assert d.encode_frame(0x50, d.DATA, d.cmd(d.CMD_RETURN_STATUS)) == CAPTURED_STATUS_REQUEST
    events = d.LineDecoder().feed(CAPTURED_STATUS_REQUEST)
    assert events == [("frame", 0x50, 0x30, b"\x01\x01\x00")]
    (code, data), = d.split_transactions(events[0][3])
    assert d.decode_transaction(code, data, from_pump=False) == ("command", d.CMD_RETURN_STATUS)


def test_crc_is_arc_not_ccitt() -> None:
    assert d.crc16_arc(b"123456789") == 0xBB3D  # CRC-16/ARC check value
    import binascii

    assert d.crc16_arc(b"123456789") != binascii.crc_hqx(b"123456789", 0xFFFF)


def test_control_bytes_are_checked() -> None:
    with pytest.raises(d.DartError):
        d.encode_frame(0x50, d.POLL, b"")
    with pytest.raises(d.DartError):
        d.encode_short(0x50, 0xFA)
    assert d.LineDecoder().feed(bytes([0x50, 0x00, d.SF]))[0][0] == "error"


def test_short_frames() -> None:
    decoder = d.LineDecoder()
    assert decoder.feed(d.encode_short(0x51, d.POLL) + d.encode_short(0x6F, d.ACK | 3)) == [
        ("short", 0x51, d.POLL), ("short", 0x6F, d.ACK | 3)]


@pytest.mark.parametrize("data", [b"\xfa", b"\x10", b"\x10\xfa", b"\xfa\xfa\x10", b"\x10\x10\x03"])
def test_fa_is_escaped_and_dle_alone_is_data(data: bytes) -> None:
    frame = d.encode_frame(0x52, d.DATA | 1, d.transaction(0x02, data))
    assert frame.count(b"\xfa") == data.count(b"\xfa") + 1 + (frame[:-1].count(b"\xfa") - data.count(b"\xfa"))
    assert all(frame[i - 1] == d.DLE for i in range(len(frame) - 1) if frame[i] == d.SF)
    assert d.LineDecoder().feed(frame) == [("frame", 0x52, d.DATA | 1, d.transaction(0x02, data))]


def test_pump_replies_round_trip() -> None:
    data = d.status(d.ST_FILLING) + d.filled(1234, 125_500) + d.nozzle(10_000, 2, True) + d.totals(1, 987_654_321, 12)
    frame = d.encode_frame(0x50, d.DATA | 5, data)
    (_, _addr, _ctrl, body), = d.LineDecoder().feed(frame)
    fields = [d.decode_transaction(c, x, from_pump=True) for c, x in d.split_transactions(body)]
    assert fields == [("status", 4), ("filled", 1234, 125_500), ("nozzle", 10_000, 2, True),
                      ("totals", 1, 987_654_321, 12)]


def test_controller_commands_round_trip() -> None:
    data = d.cmd(d.CMD_AUTHORIZE) + d.preset_volume(2000) + d.preset_amount(100_000) + d.price_update([10_000, 6_800])
    fields = [d.decode_transaction(c, x, from_pump=False) for c, x in d.split_transactions(data)]
    assert fields == [("command", 6), ("preset_volume", 2000), ("preset_amount", 100_000),
                      ("prices", [10_000, 6_800])]


@pytest.mark.parametrize("frame, reason", [
    (bytes.fromhex("50300101009f5d03fa"), "CRC mismatch"),  # one bit off in the CRC
    (bytes.fromhex("503001010 09f5c04fa".replace(" ", "")), "missing ETX"),
    (bytes.fromhex("40300101009f5c03fa"), "address"),
    (bytes.fromhex("fa"), "too short"),
])
def test_bad_frames_are_reported_and_the_next_one_decodes(frame: bytes, reason: str) -> None:
    decoder = d.LineDecoder()
    events = decoder.feed(frame + CAPTURED_STATUS_REQUEST)
    assert events[0][0] == "error" and reason in events[0][1]
    assert events[-1] == ("frame", 0x50, 0x30, b"\x01\x01\x00")
    assert decoder.errors == 1


def test_bcd() -> None:
    assert d.to_bcd(1234, 2) == b"\x12\x34"
    assert d.from_bcd(b"\x00\x12\x34") == 1234
    with pytest.raises(d.DartError):
        d.from_bcd(b"\x1a")
    with pytest.raises(d.DartError):
        d.to_bcd(10_000, 2)


def test_overrunning_transaction_length_is_an_error() -> None:
    with pytest.raises(d.DartError):
        d.split_transactions(b"\x01\x05\x00")


@settings(max_examples=300)
@given(st.integers(0x50, 0x6F), st.integers(0x30, 0x3F), st.binary(max_size=120))
def test_any_data_round_trips(addr: int, ctrl: int, data: bytes) -> None:
    frame = d.encode_frame(addr, ctrl, data)
    assert d.LineDecoder().feed(frame) == [("frame", addr, ctrl, data)]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_decoder_never_raises_on_garbage(chunks: list[bytes]) -> None:
    decoder = d.LineDecoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            assert event[0] in ("short", "frame", "error")
            if event[0] == "frame":
                assert d.crc16_arc(bytes([event[1], event[2]]) + event[3]) is not None
    # After any garbage, a good frame decodes once the line is resynchronised: two SF, since
    # garbage ending in DLE turns one SF into data (that frame is lost; the master resends).
    assert decoder.feed(b"\xfa\xfa" + CAPTURED_STATUS_REQUEST)[-1] == ("frame", 0x50, 0x30, b"\x01\x01\x00")


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=30))
def test_transaction_decoding_rejects_or_parses_never_crashes(data: bytes) -> None:
    for code in (d.DC1_STATUS, d.DC2_FILLED, d.DC3_NOZZLE, d.DC101_TOTALS):
        with contextlib.suppress(d.DartError):
            d.decode_transaction(code, data, from_pump=True)
