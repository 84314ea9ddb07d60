"""The Veeder-Root TLS computer-format codec (hal/tls_proto.py) against messages written by
hand from the published serial interface format (SOH, function code, tank, date, data,
'&&', four hex digits of checksum, ETX), and fuzzed: garbage never raises, never decodes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal import tls_proto as tls


def published_checksum(text: str) -> str:
    """The manual's rule, independently: 16-bit two's complement of the sum of every
    character from SOH through '&&'; message + checksum sums to zero."""
    total = sum(ord(c) for c in text) % 0x10000
    return "%04X" % ((0x10000 - total) % 0x10000)


def message(body: str) -> bytes:
    head = "\x01" + body + "&&"
    return (head + published_checksum(head) + "\x03").encode()


# In-tank inventory, tank 1, Pertalite (product code '1'), no status bits, 7 fields:
# volume 18000 L, TC volume 17850.25 L, ullage 12000 L, height 1500 mm, water 20 mm,
# 29.5 C, water volume 20 L. IEEE floats written from their bit patterns.
INVENTORY_BODY = ("i201012611300830" + "01" + "1" + "0000" + "07" + "468CA000" + "468B7480" + "463B8000"
                  + "44BB8000" + "41A00000" + "41EC0000" + "41A00000")


def test_command_bytes_are_the_documented_ones() -> None:
    assert tls.command("201") == b"\x01i20100"
    assert tls.command("205", 2) == b"\x01i20502"
    assert tls.command("202", 1) == b"\x01i20201"
    with pytest.raises(tls.TlsError):
        tls.command("201", 100)


def test_checksum_makes_the_message_sum_to_zero() -> None:
    frame = message(INVENTORY_BODY)
    assert frame == tls.frame(INVENTORY_BODY.encode())  # the codec writes exactly the published bytes
    head, check = frame[:-5], frame[-5:-1]
    assert (sum(head) + int(check, 16)) % 0x10000 == 0


def test_inventory_decodes_to_the_written_values() -> None:
    events = tls.Decoder().feed(message(INVENTORY_BODY))
    assert len(events) == 1 and events[0][:3] == ("message", "201", 1)
    stamp, tanks = tls.parse_inventory(events[0][3])
    assert stamp == "2026-11-30T08:30"
    assert len(tanks) == 1
    tank, product, status, fields = tanks[0]
    assert (tank, product, status) == (1, "1", 0)
    assert fields == {"volume": 18000.0, "tc_volume": 17850.25, "ullage": 12000.0, "height": 1500.0,
                      "water": 20.0, "temperature": 29.5, "water_volume": 20.0}


def test_two_tanks_deliveries_and_alarms() -> None:
    two = INVENTORY_BODY.replace("i20101", "i20100") + "02" + "2" + "0001" + "02" + "463B8000" + "463B8000"
    events = tls.Decoder().feed(message(two))
    _, tanks = tls.parse_inventory(events[0][3])
    assert [t[0] for t in tanks] == [1, 2] and tanks[1][2] == tls.STATUS_DELIVERY
    assert tanks[1][3] == {"volume": 12000.0, "tc_volume": 12000.0}
    # one delivery into tank 2: 12000 L -> 18000 L, 10 fields
    delivery = ("i202002611300830" + "02" + "2" + "01" + "2611300800" + "2611300815" + "0A"
                + "463B8000" * 2 + "41A00000" + "41EC0000" + "468CA000" * 2 + "41A00000" + "41EC0000"
                + "44960000" + "44BB8000")
    _, dtanks = tls.parse_deliveries(tls.Decoder().feed(message(delivery))[0][3])
    (start, end, fields), = dtanks[0][2]
    assert (start, end) == ("2026-11-30T08:00", "2026-11-30T08:15")
    assert fields["end_volume"] - fields["start_volume"] == 6000.0 and fields["end_height"] == 1500.0
    alarms = "i205002611300830" + "01" + "00" + "02" + "02" + "06" + "04"
    _, atanks = tls.parse_alarms(tls.Decoder().feed(message(alarms))[0][3])
    assert atanks == [(1, []), (2, ["sudden_loss_alarm", "overfill_alarm"])]


@pytest.mark.parametrize("damage, reason", [
    (lambda f: f[:10] + bytes([f[10] ^ 0x01]) + f[11:], "checksum mismatch"),
    (lambda f: f.replace(b"&&", b"&%"), "no && and checksum"),
    (lambda f: f[:-5] + b"ZZZZ" + f[-1:], "checksum is not hex"),
])
def test_damaged_messages_are_errors_and_the_next_one_decodes(damage: object, reason: str) -> None:
    good = message(INVENTORY_BODY)
    events = tls.Decoder().feed(damage(good) + good)  # type: ignore[operator]
    assert events[0][0] == "error" and reason in events[0][1]
    assert events[1][0] == "message"


def test_unknown_command_answer_and_noise_between_messages() -> None:
    events = tls.Decoder().feed(b"noise\x019999FF1B\x03\r\n" + message(INVENTORY_BODY))
    assert events[0] == ("unknown_command",) and events[1][0] == "message"


def test_parity_bit_is_cleared_before_decoding() -> None:
    frame = bytes(b | 0x80 if i % 2 else b for i, b in enumerate(message(INVENTORY_BODY)))
    assert tls.Decoder().feed(frame)[0][0] == "message"


def test_simulator_responses_round_trip() -> None:
    values = [18000.0, 17850.25, 12000.0, 1500.0, 20.0, 29.5, 20.0]
    frame = tls.inventory_response(0, "2026-11-30T08:30", [(1, "1", 0, values)])
    assert frame == message(INVENTORY_BODY.replace("i20101", "i20100"))
    assert tls.CommandDecoder().feed(b"xx\x01i20100\x01I20502") == [("command", "201", 0), ("command", "205", 2)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_decoder_never_raises_on_garbage(chunks: list[bytes]) -> None:
    decoder = tls.Decoder()
    for chunk in chunks:
        for event in decoder.feed(chunk):
            assert event[0] in ("message", "error", "unknown_command")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parsers_reject_or_parse_never_crash(data: bytes) -> None:
    for parse in (tls.parse_inventory, tls.parse_deliveries, tls.parse_alarms):
        with contextlib.suppress(tls.TlsError):
            parse(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789ABCDEF", min_size=0, max_size=60))
def test_framed_garbage_with_a_good_checksum_is_rejected_cleanly(body: str) -> None:
    for event in tls.Decoder().feed(message("i201" + body)):
        if event[0] == "message":
            with contextlib.suppress(tls.TlsError):
                tls.parse_inventory(event[3])
