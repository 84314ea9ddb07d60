"""Keyboard-mode (HID) barcode scanners: Linux key events -> scanned text. Sans-IO.

A scanner in keyboard mode "types" each code as key presses on a US layout, with Shift for
capitals and symbols, and presses Enter (or Tab, if configured) at the end. Feed
(code, value) pairs from evdev (value 1 = down, 0 = up, 2 = auto-repeat); get
("scan", text) or ("error", reason) events. Never raises on input.
"""

from __future__ import annotations

MAX_LEN = 512
ERR_TOO_LONG = "too_long"
ERR_NOT_TEXT = "not_text"

KEY_TAB, KEY_ENTER, KEY_KPENTER = 15, 28, 96
KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_CAPSLOCK = 42, 54, 58
_MODIFIERS = {29, 56, 97, 100, 125, 126}  # ctrl, alt, meta: no text, not garbage either

_PLAIN: dict[int, str] = {
    2: "1", 3: "2", 4: "3", 5: "4", 6: "5", 7: "6", 8: "7", 9: "8", 10: "9", 11: "0", 12: "-", 13: "=",
    16: "q", 17: "w", 18: "e", 19: "r", 20: "t", 21: "y", 22: "u", 23: "i", 24: "o", 25: "p", 26: "[", 27: "]",
    30: "a", 31: "s", 32: "d", 33: "f", 34: "g", 35: "h", 36: "j", 37: "k", 38: "l", 39: ";", 40: "'", 41: "`",
    43: "\\", 44: "z", 45: "x", 46: "c", 47: "v", 48: "b", 49: "n", 50: "m", 51: ",", 52: ".", 53: "/", 57: " ",
    # keypad: some scanners type digits there
    55: "*", 71: "7", 72: "8", 73: "9", 74: "-", 75: "4", 76: "5", 77: "6", 78: "+", 79: "1", 80: "2", 81: "3",
    82: "0", 83: ".", 98: "/",
}
_SHIFTED_SYMBOLS = dict(zip("1234567890-=[];'`\\,./", '!@#$%^&*()_+{}:"~|<>?', strict=True))
_KEYPAD = {55, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 98}

# The inverse, for simulators and tests: character -> (key code, shift).
KEYS_FOR: dict[str, tuple[int, bool]] = {}
for _code, _char in _PLAIN.items():
    if _code in _KEYPAD:
        continue
    KEYS_FOR[_char] = (_code, False)
    if _char.isalpha():
        KEYS_FOR[_char.upper()] = (_code, True)
    elif _char in _SHIFTED_SYMBOLS:
        KEYS_FOR[_SHIFTED_SYMBOLS[_char]] = (_code, True)


class KeymapDecoder:
    def __init__(self, max_len: int = MAX_LEN, tab_ends_scan: bool = False) -> None:
        self.max_len = max_len
        self._ends = (KEY_ENTER, KEY_KPENTER, KEY_TAB) if tab_ends_scan else (KEY_ENTER, KEY_KPENTER)
        self._shift: set[int] = set()
        self._caps = False
        self._buf: list[str] = []
        self._garbage = False
        self._overflow = False

    def feed(self, code: int, value: int) -> list[tuple[str, str]]:
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            if value == 0:
                self._shift.discard(code)
            else:
                self._shift.add(code)
            return []
        if value != 1:
            return []  # key up, or auto-repeat from a key held down: a scanner never does that
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return []
        if code in self._ends:
            return self._end()
        if code in _MODIFIERS:
            return []
        char = self._char(code)
        if char is None:
            self._garbage = True
        elif len(self._buf) >= self.max_len:
            self._overflow = True
        else:
            self._buf.append(char)
        return []

    def _char(self, code: int) -> str | None:
        plain = _PLAIN.get(code)
        if plain is None:
            return None
        if code in _KEYPAD:
            return plain
        shifted = bool(self._shift)
        if plain.isalpha():
            return plain.upper() if shifted != self._caps else plain
        return _SHIFTED_SYMBOLS.get(plain, plain) if shifted else plain

    def _end(self) -> list[tuple[str, str]]:
        text, garbage, overflow = "".join(self._buf), self._garbage, self._overflow
        self._buf, self._garbage, self._overflow = [], False, False
        if overflow:
            return [("error", ERR_TOO_LONG)]
        if garbage:
            return [("error", ERR_NOT_TEXT)]
        if not text:
            return []
        if text.startswith("]") and len(text) >= 3 and text[1].isalpha() and text[2].isalnum():
            text = text[3:]  # an AIM symbology identifier, as on the serial line
            if not text:
                return [("error", ERR_NOT_TEXT)]
        return [("scan", text)]


def key_events(text: str, end: int = KEY_ENTER) -> list[tuple[int, int]]:
    """The (code, value) events a keyboard-mode scanner sends for `text`."""
    events: list[tuple[int, int]] = []
    for char in text:
        code, shift = KEYS_FOR[char]
        if shift:
            events.append((KEY_LEFTSHIFT, 1))
        events += [(code, 1), (code, 0)]
        if shift:
            events.append((KEY_LEFTSHIFT, 0))
    return [*events, (end, 1), (end, 0)]
