"""Serial barcode-scanner line decoder (hal.scanner_proto): bytes in, events out."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.scanner_proto import ERR_NOT_TEXT, ERR_TOO_LONG, MAX_LEN, ScanLineDecoder

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


@pytest.mark.parametrize("suffix", [b"\r", b"\n", b"\r\n"], ids=["CR", "LF", "CRLF"])
def test_suffixes(suffix: bytes) -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"ABC-123" + suffix + b"xyz 9" + suffix) == [
        ("scan", "ABC-123", ""),
        ("scan", "xyz 9", ""),
    ]


def test_mixed_suffixes_in_one_stream() -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"one\rtwo\nthree\r\nfour\n\r") == [
        ("scan", "one", ""),
        ("scan", "two", ""),
        ("scan", "three", ""),
        ("scan", "four", ""),
    ]


def test_no_event_until_terminator() -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"B 1234 XYZ") == []
    assert decoder.feed(b"\r\n") == [("scan", "B 1234 XYZ", "")]


def test_aim_prefix_is_stripped_and_returned() -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"]Q1SPBU:31.401.02|B1234XYZ\r\n") == [("scan", "SPBU:31.401.02|B1234XYZ", "]Q1")]
    assert decoder.feed(b"]E04901234567894\r") == [("scan", "4901234567894", "]E0")]


def test_aim_prefix_only_is_not_text() -> None:
    assert ScanLineDecoder().feed(b"]Q1\r") == [("error", ERR_NOT_TEXT)]


@pytest.mark.parametrize("prefix", [b"]\x00\x01", b"]\xffQ", b"]Q\x1b"], ids=["nul-soh", "high-byte", "esc"])
def test_non_printable_aim_identifier_is_not_text(prefix: bytes) -> None:
    assert ScanLineDecoder().feed(prefix + b"ABC\r") == [("error", ERR_NOT_TEXT)]


def test_bracket_inside_text_is_kept() -> None:
    assert ScanLineDecoder().feed(b"A]Q1B\n") == [("scan", "A]Q1B", "")]


def test_partial_reads_reassemble() -> None:
    decoder = ScanLineDecoder()
    events = []
    for chunk in (b"]Q", b"1HEL", b"LO WOR", b"LD\r", b"\nSEC", b"OND", b"\r", b"\n"):
        events += decoder.feed(chunk)
    assert events == [("scan", "HELLO WORLD", "]Q1"), ("scan", "SECOND", "")]


def test_byte_by_byte() -> None:
    decoder = ScanLineDecoder()
    data = b"]Q1abc\r\ndef\n"
    events = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    assert events == [("scan", "abc", "]Q1"), ("scan", "def", "")]


def test_empty_lines_ignored() -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"\r\n\r\n\n\r") == []
    assert decoder.feed(b"\n\nX\n\n") == [("scan", "X", "")]
    assert decoder.feed(b"") == []


def test_over_long_line_then_good_line() -> None:
    decoder = ScanLineDecoder(max_len=8)
    assert decoder.feed(b"123456789\r\nGOOD\r\n") == [("error", ERR_TOO_LONG), ("scan", "GOOD", "")]


def test_line_of_exactly_max_len_is_accepted() -> None:
    decoder = ScanLineDecoder(max_len=8)
    assert decoder.feed(b"12345678\n") == [("scan", "12345678", "")]
    assert decoder.feed(b"123456789\n") == [("error", ERR_TOO_LONG)]


def test_default_max_len() -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"x" * MAX_LEN + b"\n") == [("scan", "x" * MAX_LEN, "")]
    assert decoder.feed(b"x" * (MAX_LEN + 1) + b"\n") == [("error", ERR_TOO_LONG)]


def test_over_long_line_across_reads_reports_once() -> None:
    decoder = ScanLineDecoder(max_len=4)
    events = []
    for chunk in (b"abc", b"def", b"ghi", b"jkl\r", b"\nok", b"\r\n"):
        events += decoder.feed(chunk)
    assert events == [("error", ERR_TOO_LONG), ("scan", "ok", "")]


@pytest.mark.parametrize("bad", [b"\x00", b"\t", b"\x1b", b"\x7f", b"\x80", b"\xff"])
def test_non_printable_is_not_text(bad: bytes) -> None:
    decoder = ScanLineDecoder()
    assert decoder.feed(b"AB" + bad + b"CD\r\nNEXT\r\n") == [("error", ERR_NOT_TEXT), ("scan", "NEXT", "")]


def test_utf8_is_not_text() -> None:
    assert ScanLineDecoder().feed("Café\n".encode()) == [("error", ERR_NOT_TEXT)]


def test_non_printable_after_aim_prefix_is_not_text() -> None:
    assert ScanLineDecoder().feed(b"]Q1ab\x01\r") == [("error", ERR_NOT_TEXT)]


def test_specific_suffix_crlf() -> None:
    decoder = ScanLineDecoder(suffix=b"\r\n")
    assert decoder.feed(b"AB\r") == []
    assert decoder.feed(b"\nCD\r\n") == [("scan", "AB", ""), ("scan", "CD", "")]


def test_specific_suffix_cr_ignores_lf() -> None:
    decoder = ScanLineDecoder(suffix=b"\r")
    assert decoder.feed(b"\nAB\r\nCD\r") == [("scan", "AB", ""), ("scan", "CD", "")]


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_fuzz_never_raises_and_scans_are_clean(data: bytes, max_len: int) -> None:
    decoder = ScanLineDecoder(max_len=max_len)
    for event in decoder.feed(data):
        assert event[0] in ("scan", "error")
        if event[0] == "error":
            assert event[1] in (ERR_TOO_LONG, ERR_NOT_TEXT)
            continue
        _, text, symbology = event
        assert isinstance(text, str) and isinstance(symbology, str)
        assert 0 < len(text) <= max_len
        assert all(c in PRINTABLE for c in text)
        assert symbology == "" or (len(symbology) == 3 and symbology[0] == "]")


@settings(max_examples=200)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_fuzz_chunking_does_not_change_events(data: bytes, cuts: list[int]) -> None:
    whole = ScanLineDecoder(max_len=32).feed(data)
    decoder = ScanLineDecoder(max_len=32)
    pieces = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        pieces += decoder.feed(data[start:cut])
        start = cut
    assert pieces == whole


_LINE = st.text(alphabet=PRINTABLE, min_size=1, max_size=40).filter(lambda s: not s.startswith("]"))


@settings(max_examples=200)
@given(
    st.lists(st.tuples(_LINE, st.sampled_from([b"\r", b"\n", b"\r\n"]), st.booleans()), max_size=10),
    st.integers(1, 7),
)
def test_printable_lines_round_trip(lines: list[tuple[str, bytes, bool]], chunk: int) -> None:
    stream = b"".join((b"]Q1" if aim else b"") + text.encode() + suffix for text, suffix, aim in lines)
    decoder = ScanLineDecoder()
    events = []
    for i in range(0, len(stream), chunk):
        events += decoder.feed(stream[i : i + chunk])
    assert events == [("scan", text, "]Q1" if aim else "") for text, _, aim in lines]


def test_printable_alphabet_is_ascii_printable() -> None:
    assert set(PRINTABLE) == set(string.printable) - set(string.whitespace) | {" "}
