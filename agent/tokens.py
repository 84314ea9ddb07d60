"""QR token text -> vehicle id.

Tokens are `SPBU1:<vehicle id in decimal>`: QR alphanumeric-mode characters only, so the
code stays small and scans well from cracked screens.
"""

from __future__ import annotations

PREFIX = "SPBU1:"
MAX_TOKEN_LEN = 200


class TokenError(ValueError):
    pass


def encode_token(vehicle_id: int) -> str:
    if not 0 < vehicle_id < 2**64:
        raise TokenError("vehicle id must be a positive 64-bit integer")
    return f"{PREFIX}{vehicle_id}"


def decode_token(text: str) -> int:
    if len(text) > MAX_TOKEN_LEN:
        raise TokenError("token too long")
    if not text.startswith(PREFIX):
        raise TokenError("not an SPBU token")
    digits = text[len(PREFIX) :]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise TokenError("vehicle id is not a number")
    vehicle_id = int(digits)
    if not 0 < vehicle_id < 2**64:
        raise TokenError("vehicle id out of range")
    return vehicle_id
