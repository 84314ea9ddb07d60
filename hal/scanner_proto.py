"""Serial barcode-scanner line protocol: a sans-IO decoder.

Scanners send each read followed by CR, LF or CR LF, optionally behind an AIM
symbology identifier (`]Q1` for QR). Bytes in, events out:
("scan", text, symbology) or ("error", reason). Never raises on input.
"""

MAX_LEN = 512

ERR_TOO_LONG = "too_long"
ERR_NOT_TEXT = "not_text"


class ScanLineDecoder:
    def __init__(self, max_len: int = MAX_LEN, suffix: bytes = b"") -> None:
        # suffix=b"" accepts CR, LF and CR LF alike; a specific suffix is only enforced
        # for the last byte, because CR LF split across reads must still reassemble.
        self.max_len = max_len
        self._terminators = (13, 10) if not suffix else (suffix[-1],)
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list:  # type: ignore[type-arg]
        events = []
        for byte in data:
            if byte in self._terminators or byte in (13, 10):
                if byte not in self._terminators:
                    continue  # e.g. the CR of a CR LF suffix
                if self._overflow:
                    events.append(("error", ERR_TOO_LONG))
                elif self._buf:
                    events.append(_line_event(bytes(self._buf)))
                self._buf = bytearray()
                self._overflow = False
                continue
            if self._overflow:
                continue
            if len(self._buf) >= self.max_len:
                self._overflow = True
                self._buf = bytearray()
                continue
            self._buf.append(byte)
        return events


def _line_event(line: bytes) -> tuple:  # type: ignore[type-arg]
    symbology = ""
    if len(line) >= 3 and line[0] == 0x5D:  # "]" starts an AIM identifier: ]Cm
        code, modifier = line[1], line[2]
        if not (_is_alpha(code) and (_is_alpha(modifier) or 0x30 <= modifier <= 0x39)):
            return ("error", ERR_NOT_TEXT)
        symbology = line[:3].decode("ascii")
        line = line[3:]
    for byte in line:
        if byte < 0x20 or byte > 0x7E:
            return ("error", ERR_NOT_TEXT)
    if not line:
        return ("error", ERR_NOT_TEXT)
    return ("scan", line.decode("ascii"), symbology)


def _is_alpha(byte: int) -> bool:
    return 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A
