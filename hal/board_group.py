"""Several pump lines as one controller: two relay boards, or two DART lines, each with
its own port. The agent addresses a fuelling point by a station-wide key,
line * LINE_STRIDE + channel; events come back with that key as their channel.

A line whose port goes away takes only its own pumps out of service (PumpOnline False
for each); the station counts as connected while any line is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from hal.relay_board import BoardEvent, BoardLink, PumpController, PumpOnline

LINE_STRIDE = 256


def key(line: int, channel: int) -> int:
    return line * LINE_STRIDE + channel


class BoardGroup:
    def __init__(self, make: Sequence[Callable[[Callable[[BoardEvent], None]], PumpController]],
                 channels: Sequence[Sequence[int]], on_event: Callable[[BoardEvent], None]) -> None:
        """make[i](sink) builds line i's controller; channels[i]: its channels in use."""
        self._on_event = on_event
        self._channels = [list(c) for c in channels]
        self._up = [False] * len(make)
        self._any_up = False
        self.lines = [build(self._sink(i)) for i, build in enumerate(make)]
        self.totals_required = any(line.totals_required for line in self.lines)

    def _sink(self, line: int) -> Callable[[BoardEvent], None]:
        return lambda event: self._event(line, event)

    def _event(self, line: int, event: BoardEvent) -> None:
        if isinstance(event, BoardLink):
            self._up[line] = event.connected
            if any(self._up) != self._any_up:
                self._any_up = any(self._up)
                self._on_event(BoardLink(self._any_up))
                if self._any_up:  # lines not open yet: their pumps are out of service until they are
                    for other, up in enumerate(self._up):
                        for channel in [] if up else self._channels[other]:
                            self._on_event(PumpOnline(key(other, channel), False))
            for channel in self._channels[line]:
                self._on_event(PumpOnline(key(line, channel), event.connected))
            return
        if hasattr(event, "channel"):
            event = dataclasses.replace(event, channel=key(line, event.channel))  # type: ignore[arg-type]
        self._on_event(event)

    def _route(self, station_key: int) -> tuple[PumpController, int]:
        return self.lines[station_key // LINE_STRIDE], station_key % LINE_STRIDE

    # --- PumpController --------------------------------------------------------------------

    def start(self) -> None:
        for line in self.lines:
            line.start()

    def close(self) -> None:
        for line in self.lines:
            line.close()

    def keep_alive(self) -> None:
        for line in self.lines:
            line.keep_alive()

    def last_beat(self) -> float:
        return min(line.last_beat() for line in self.lines)

    def authorize(self, channel: int, auth_id: int, preset_pulses: int) -> None:
        line, local = self._route(channel)
        line.authorize(local, auth_id, preset_pulses)

    def stop(self, channel: int) -> None:
        line, local = self._route(channel)
        line.stop(local)

    def query(self, channel: int) -> None:
        line, local = self._route(channel)
        line.query(local)

    def __getattr__(self, name: str) -> Any:
        """Per-channel extras of some controllers (select_nozzles, set_prices, ...)."""
        if name not in ("select_nozzles", "set_prices", "authorize_amount"):
            raise AttributeError(name)
        if not all(hasattr(line, name) for line in self.__dict__.get("lines", [])):
            raise AttributeError(name)

        def call(channel: int, *args: Any) -> Any:
            line, local = self._route(channel)
            return getattr(line, name)(local, *args)
        return call
