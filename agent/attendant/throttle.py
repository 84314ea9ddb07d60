"""Wrong PINs cost time: after `max_failures` in a row a device (and, separately, an attendant
number) must wait, and each further failure doubles the wait. A 4-digit PIN then takes
months to guess from one phone instead of minutes."""

from __future__ import annotations

from dataclasses import dataclass

MAX_WAIT_S = 900.0


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0


class Throttle:
    def __init__(self, max_failures: int, lockout_s: float) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._records: dict[str, _Record] = {}

    def wait_s(self, keys: tuple[str, ...], now: float) -> float:
        """How long these callers must still wait (0: they may try)."""
        return max((max(0.0, r.until - now) for k in keys if (r := self._records.get(k))), default=0.0)

    def failed(self, keys: tuple[str, ...], now: float) -> float:
        wait = 0.0
        for key in keys:
            record = self._records.setdefault(key, _Record())
            record.failures += 1
            over = record.failures - self.max_failures
            if over >= 0:
                record.until = now + min(MAX_WAIT_S, self.lockout_s * 2.0 ** over)
                wait = max(wait, record.until - now)
        return wait

    def succeeded(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._records.pop(key, None)
