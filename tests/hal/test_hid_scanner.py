"""Keyboard-mode (HID) scanners: the keymap decoder on plain key events, and the evdev
driver on a virtual keyboard (uinput) where the kernel offers one."""

from __future__ import annotations

import datetime as dt
import os
import queue
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.qr.tokens import issue_token
from hal.hid_keymap import (
    KEY_CAPSLOCK,
    KEY_ENTER,
    KEY_LEFTSHIFT,
    KEY_TAB,
    KEYS_FOR,
    KeymapDecoder,
    key_events,
)
from hal.scanner import ScannerState, ScanRead
from tests.helpers import wait_for


def decode(events: list[tuple[int, int]], **kw: Any) -> list[tuple[str, str]]:
    decoder = KeymapDecoder(**kw)
    out: list[tuple[str, str]] = []
    for code, value in events:
        out += decoder.feed(code, value)
    return out


def test_signed_token_typed_by_a_scanner_decodes_exactly() -> None:
    token = issue_token(2**63 + 5, "AB 12 CD", dt.date(2026, 11, 23), Ed25519PrivateKey.generate())
    assert decode(key_events(token)) == [("scan", token)]


def test_aim_prefix_shift_symbols_and_keypad() -> None:
    assert decode(key_events("]Q1HELLO $%*+-./:")) == [("scan", "HELLO $%*+-./:")]
    assert decode([(79, 1), (79, 0), (82, 1), (82, 0), (96, 1)]) == [("scan", "10")]  # keypad 1 0, keypad enter


def test_caps_lock_and_right_shift() -> None:
    events = [(KEY_CAPSLOCK, 1), (KEY_CAPSLOCK, 0), (30, 1), (30, 0), (54, 1), (30, 1), (30, 0), (54, 0),
              (KEY_ENTER, 1)]
    assert decode(events) == [("scan", "Aa")]


def test_garbage_too_long_repeat_and_tab() -> None:
    assert decode([(30, 1), (59, 1), (KEY_ENTER, 1)]) == [("error", "not_text")]  # F1 in the middle
    assert decode(key_events("ABCDEF"), max_len=5) == [("error", "too_long")]
    assert decode(key_events("ABC") + key_events("XY")) == [("scan", "ABC"), ("scan", "XY")]
    assert decode([(30, 1), (30, 2), (30, 2), (30, 0), (KEY_ENTER, 1)]) == [("scan", "a")]  # held key
    assert decode(key_events("AB", end=KEY_TAB)) == []
    assert decode(key_events("AB", end=KEY_TAB), tab_ends_scan=True) == [("scan", "AB")]
    assert decode([(KEY_ENTER, 1), (KEY_LEFTSHIFT, 1), (KEY_ENTER, 1)]) == []  # empty lines


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(-1, 3)), max_size=200))
def test_fuzz_never_raises_and_scans_are_printable(events: list[tuple[int, int]]) -> None:
    for kind, payload in decode(events, max_len=64):
        assert kind in ("scan", "error")
        if kind == "scan":
            assert payload and len(payload) <= 64 and payload.isprintable() and payload.isascii()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="".join(sorted(KEYS_FOR)), min_size=1, max_size=40), max_size=5))
def test_fuzz_round_trip(texts: list[str]) -> None:
    texts = [t for t in texts if not (t.startswith("]") and len(t) >= 3 and t[1].isalpha() and t[2].isalnum())]
    events = [e for t in texts for e in key_events(t)]
    assert decode(events) == [("scan", t) for t in texts if t]


@pytest.mark.integration
@pytest.mark.skipif(not os.path.exists("/dev/uinput") or not os.access("/dev/uinput", os.W_OK),
                    reason="no writable /dev/uinput here (containers have none): the decoder tests above "
                    "cover the keymap; this runs on a Pi or a VM with the uinput module")
def test_evdev_driver_on_a_virtual_keyboard() -> None:
    import evdev

    from hal.hid_scanner import HidScanner

    keys = sorted({code for code, _ in KEYS_FOR.values()} | {KEY_ENTER, KEY_LEFTSHIFT})
    ui = evdev.UInput({evdev.ecodes.EV_KEY: keys}, name="spbu-test-scanner")
    events: queue.Queue[Any] = queue.Queue()
    scanner = HidScanner(str(ui.device.path), events.put)
    scanner.start()
    try:
        wait_for(events, lambda e: e == ScannerState(True))
        time.sleep(0.1)
        for code, value in key_events("SPBU2:HID 42"):
            ui.write(evdev.ecodes.EV_KEY, code, value)
            ui.syn()
        assert wait_for(events, lambda e: isinstance(e, ScanRead)).text == "SPBU2:HID 42"
    finally:
        scanner.close()
        ui.close()
