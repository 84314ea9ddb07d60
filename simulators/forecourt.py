"""Several pump lines (relay boards or DART lines, one per island) seen as one forecourt:
fuelling point n's channel is n - 1 across the station; each call goes to the line that
serves it. Demos and tests drive islands exactly as they drive one line."""

from __future__ import annotations

from typing import Any

from simulators.dart_pump import DartPumpSim
from simulators.relay_board import RelayBoardSim


class Forecourt:
    def __init__(self, lines: list[RelayBoardSim | DartPumpSim], per_line: list[int]) -> None:
        self.lines = lines
        self._route: list[tuple[int, int]] = [(i, c) for i, count in enumerate(per_line) for c in range(count)]

    def where(self, channel: int) -> tuple[int, int]:
        """Station channel -> (line, channel on that line)."""
        return self._route[channel]

    def _line(self, channel: int) -> tuple[Any, int]:
        line, local = self._route[channel]
        return self.lines[line], local

    @property
    def paths(self) -> list[str]:
        return [line.path for line in self.lines]

    @property
    def path(self) -> str:
        return self.lines[0].path

    def start(self) -> None:
        for line in self.lines:
            line.start()

    def close(self) -> None:
        for line in self.lines:
            line.close()

    def lift_nozzle(self, channel: int, nozzle: int = 1) -> None:
        line, local = self._line(channel)
        if isinstance(line, DartPumpSim):
            line.lift_nozzle(local, nozzle)
        else:
            line.lift_nozzle(local)

    def hang_nozzle(self, channel: int) -> None:
        line, local = self._line(channel)
        line.hang_nozzle(local)

    def relay_closed(self, channel: int) -> bool:
        line, local = self._line(channel)
        return bool(line.relay_closed(local))

    def flowing(self, channel: int) -> bool:
        line, local = self._line(channel)
        return bool(line.flowing(local))

    def totaliser_ml(self, channel: int) -> int:
        line, local = self._line(channel)
        return int(line.totaliser_ml(local))

    def nozzle_totaliser_ml(self, channel: int, nozzle: int) -> int:
        line, local = self._line(channel)
        return int(line.nozzle_totaliser_ml(local, nozzle))

    def prices(self, channel: int) -> list[int]:
        line, local = self._line(channel)
        return list(line.prices(local))

    def set_dead(self, channel: int, dead: bool) -> None:
        line, local = self._line(channel)
        line.set_dead(local, dead)

    def accepted(self) -> list[tuple[int, int, int]]:
        return [a for line in self.lines for a in line.accepted()]

    def host_hellos(self) -> int:
        return min(line.host_hellos() for line in self.lines)
