"""agent/qr/identify.py: every scanned text ends in a vehicle id or a refusal code, never
an exception; legacy texts map only under the signed list's salt, the same way every time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.qr.identify import identify
from agent.qr.legacy_ids import legacy_vehicle_id
from agent.qr.tokens import MALFORMED, PREFIX

SALT = bytes(range(16))
OTHER_SALT = bytes(range(1, 17))

# Texts a scanner really produces: old-format codes, typos, stray URLs, bad encodings.
TEXTS = [
    "SPBU1:", "SPBU1:0", "SPBU1:18446744073709551616", "SPBU1:" + "1" * 21, "spbu1:5", "SPBU1 5", "5",
    "SPBU1:-5", "SPBU1: 5", "SPBU1:5 ", "SPBU1:1_000", "SPBU1:0x10", "SPBU1:١٢٣", "SPBU1:²",
    "https://example.com/SPBU1:5", "B 1234 XYZ", "  padded  ", "\t", "x" * 200, "x" * 201, "é" * 101,
]


@pytest.mark.parametrize("text", TEXTS)
def test_unsigned_text_is_a_legacy_id_or_malformed_never_an_error(text: str) -> None:
    seen = identify(text, {}, SALT)
    stripped = text.strip().encode()
    if stripped and len(stripped) <= 200:
        assert seen.vehicle_id == legacy_vehicle_id(text, SALT) and not seen.reason
        assert identify(text, {}, SALT) == seen  # the same id at every scan
        assert identify(text, {}, OTHER_SALT).vehicle_id != seen.vehicle_id
    else:
        assert seen.vehicle_id is None and seen.reason == MALFORMED


def test_without_the_lists_salt_no_legacy_text_is_mapped() -> None:
    seen = identify("B 1234 XYZ", {}, None)
    assert seen.vehicle_id is None and seen.reason == MALFORMED
    assert identify("B 1234 XYZ", {}, b"short").reason == MALFORMED


@pytest.mark.parametrize("tail", ["", "!!", "AAAA", "0" * 150, "%%%%"])
def test_a_broken_signed_token_is_refused_with_a_reason(tail: str) -> None:
    seen = identify(PREFIX + tail, {}, SALT)
    assert seen.vehicle_id is None and seen.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=260))
def test_any_text_ends_in_an_id_or_a_reason(text: str) -> None:
    seen = identify(text, {}, SALT)
    assert (seen.vehicle_id is None) == bool(seen.reason)
    if seen.vehicle_id is not None:
        assert 0 < seen.vehicle_id < 2**64
