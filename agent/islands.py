"""Islands: one EDC terminal per island, each paying for its own pumps, all at once.

`IslandPayments` stands where the station had one PaymentDesk: one desk per terminal
(agent/payments.py, filtered to the island's pumps), every call routed by pump, every
terminal event tagged with its island. With a single terminal it is one desk for every
pump: nothing changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import EdcConfig, StationConfig
from agent.journal import Journal, SessionRow
from agent.payments.desk import PaymentChoice, PaymentDesk
from hal.edc import EdcEvent, EdcTerminal


@dataclass(frozen=True)
class IslandEdc:
    """An event from one island's terminal."""

    island: int
    event: EdcEvent


class IslandPayments:
    def __init__(self, config: StationConfig, journal: Journal, put: Callable[[object], None],
                 make_desk: Callable[[EdcTerminal | None, EdcConfig | None], PaymentDesk]) -> None:
        edcs = [config.edc, *config.more_edcs] if config.edc is not None else []
        self.terminals: list[EdcTerminal] = [
            EdcTerminal(e.port, self._sink(i, put), e.baud, e.ack_timeout_s, e.max_retries, e.response_timeout_s)
            for i, e in enumerate(edcs)]
        self.desks = [make_desk(t, e) for t, e in zip(self.terminals, edcs, strict=True)] or [make_desk(None, None)]
        self._by_pump: dict[int, PaymentDesk] = {}
        for desk, edc in zip(self.desks, edcs, strict=False):
            for pump in (edc.pumps or [p.number for p in config.pumps]):
                self._by_pump.setdefault(pump, desk)

    @staticmethod
    def _sink(island: int, put: Callable[[object], None]) -> Callable[[EdcEvent], None]:
        return lambda event: put(IslandEdc(island, event))

    def desk(self, pump: int) -> PaymentDesk:
        return self._by_pump.get(pump, self.desks[0])

    # --- what the station asks, routed by pump -----------------------------------------------

    @property
    def available(self) -> bool:
        """Every island's terminal answers (a demo waits for this)."""
        return all(d.available for d in self.desks)

    def available_for(self, pump: int) -> bool:
        return self.desk(pump).available

    def select(self, pump: int, choice: PaymentChoice) -> None:
        self.desk(pump).select(pump, choice)

    def take_choice(self, pump: int) -> PaymentChoice:
        return self.desk(pump).take_choice(pump)

    def wants_tick(self) -> bool:
        """Work waits on a terminal: the station loop should come round soon."""
        return any(d.wants_tick() for d in self.desks)

    def busy(self, pump: int) -> bool:
        return self.desk(pump).busy(pump)

    def start_prepay(self, pump: int, scan_text: str, choice: PaymentChoice, charge: int, preset_ml: int) -> None:
        self.desk(pump).start_prepay(pump, scan_text, choice, charge, preset_ml)

    def link_prepaid(self, pay_id: int) -> Callable[[sqlite3.Connection, int, str], None]:
        return self.desks[0].link_prepaid(pay_id)  # a journal update: any desk does it

    def postpay_with_session(self, pump: int, choice: PaymentChoice,
                             preset_ml: int) -> Callable[[sqlite3.Connection, int, str], None]:
        return self.desk(pump).postpay_with_session(pump, choice, preset_ml)

    def open_postpay(self, session: SessionRow, choice: PaymentChoice) -> None:
        self.desk(session.pump).open_postpay(session, choice)

    def on_close(self, session: SessionRow, dispensed_ml: int, amount: int,
                 record: dict[str, Any]) -> Callable[[sqlite3.Connection], None] | None:
        return self.desk(session.pump).on_close(session, dispensed_ml, amount, record)

    def payment_for_tx(self, tx_id: str) -> dict[str, Any] | None:
        return self.desks[0].payment_for_tx(tx_id)

    def payment_of(self, tx_id: str) -> dict[str, Any] | None:
        return self.desks[0].payment_of(tx_id)

    def recover(self) -> None:
        self.desks[0].recover()  # journal-wide; the other desks only need waking
        for desk in self.desks[1:]:
            desk._dirty = True

    def tick(self, now: float) -> None:
        for desk in self.desks:
            desk.tick(now)

    def on_event(self, tagged: IslandEdc) -> None:
        self.desks[tagged.island].on_event(tagged.event)

    # --- the terminals' life cycle ------------------------------------------------------------

    def start(self) -> None:
        for terminal in self.terminals:
            terminal.start()

    def close(self) -> None:
        for terminal in self.terminals:
            terminal.close()
