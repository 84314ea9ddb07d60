"""Signed usage batches for stations (`hq/v1/usage/<station>`), built from the ledger.

Scope (docs/national-quota.md has the numbers): a vehicle-day goes to every station of
each *area* where the vehicle has bought or is buying today. A vehicle that shows up in a
new area reaches that area's stations with its first fill there, and the station where
it is fuelling learns its usage elsewhere at once from the reservation it opened.

Each station gets its own batch, tailored: its own counters are left out (its journal is
its own counter), and of the fills in progress elsewhere only those that headquarters saw
before the station's own (so of two stations serving one copied QR at once, the later one
yields and the earlier one carries on).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.trust import root as trust
from hq.db import area_of
from hq.ledger import Key, VehicleDayRow

MAX_ENTRIES = 2_000  # per batch; stations refuse more than 20,000
SEQ_BLOCK = 10_000  # sequence numbers taken from the database at a time

# (publisher, slot, count) -> the highest number of a fresh block of `count` (the ledger's
# database keeps it: a restarted publisher goes on above anything it ever signed).
SeqSource = Callable[[str, str, int], int]

Message = tuple[str, bytes]  # (topic, payload)


def tailored(row: VehicleDayRow, recipient: str) -> tuple[list[list[Any]], list[list[Any]]] | None:
    """What `recipient` should know of a vehicle-day, or None when there is nothing elsewhere."""
    used = [[s, ml] for s, ml in sorted(row.used.items()) if s != recipient]
    own = next((rev for s, _, rev in row.reservations if s == recipient), None)
    reserved: dict[str, int] = defaultdict(int)
    for station, ml, rev in row.reservations:
        if station != recipient and (own is None or rev < own):
            reserved[station] += ml
    if not used and not reserved:
        return None
    return used, [[s, ml] for s, ml in sorted(reserved.items())]


class _Counter:
    """A publisher's sequence for one slot: from `source` in blocks, else from 1 in memory."""

    def __init__(self, publisher: str, slot: str, source: SeqSource | None) -> None:
        self.publisher, self.slot, self.source = publisher, slot, source
        self.value = 0
        self.high = 0 if source is not None else 1 << 62

    def next(self) -> int:
        if self.value >= self.high:
            assert self.source is not None
            self.high = self.source(self.publisher, self.slot, SEQ_BLOCK)
            self.value = self.high - SEQ_BLOCK  # the rest of an earlier block is skipped: gaps are fine
        self.value += 1
        return self.value


class UsageFeed:
    """One ledger process's publisher: its id and sequences (stations refuse replays: a batch
    whose sequence is not above the last they took from that publisher). With `seq_source`
    the sequences live in the ledger's database, so a publisher keeps its id across restarts
    and a batch it signed before a restart is still a replay after it; without, they start at
    1 and the id must be new each time."""

    def __init__(self, keys: list[Ed25519PrivateKey], publisher: str | None = None,
                 max_entries: int = MAX_ENTRIES, seq_source: SeqSource | None = None) -> None:
        self.keys = keys
        self.publisher = publisher or f"ledger-{uuid.uuid4().hex[:12]}"
        self.max_entries = max_entries
        self._seq = _Counter(self.publisher, "station", seq_source)
        self._tick_seq = _Counter(self.publisher, "tick", seq_source)
        self.bytes_out = 0
        self.messages_out = 0

    def _sign(self, body: dict[str, Any]) -> bytes:
        data = trust.sign({"_type": "usage", "publisher": self.publisher,
                           "issued": dt.datetime.now(dt.UTC).isoformat(), **body}, self.keys)
        self.bytes_out += len(data)
        self.messages_out += 1
        return data

    def _batches(self, station: str, kind: str, by_day: dict[str, list[list[Any]]],
                 extra: dict[str, Any] | None = None) -> list[Message]:
        out: list[Message] = []
        for day, entries in sorted(by_day.items()):
            chunks = [entries[i:i + self.max_entries] for i in range(0, len(entries), self.max_entries)] or [[]]
            for index, chunk in enumerate(chunks):
                body = {"kind": kind, "station": station, "day": day, "seq": self._seq.next(),
                        "last": index == len(chunks) - 1, "entries": chunk, **(extra or {})}
                out.append((topics.usage(station), self._sign(body)))
        return out

    def updates(self, rows: dict[Key, VehicleDayRow], by_area: dict[str, list[str]],
                only: dict[Key, set[str]] | None = None) -> list[Message]:
        """Batches for every station that should hear of these vehicle-days; `only` limits a
        vehicle-day to the given stations (a reservation is told to the station that made it)."""
        per_station: dict[str, dict[str, list[list[Any]]]] = defaultdict(lambda: defaultdict(list))
        for key, row in rows.items():
            vid, product, day = key
            if only is not None:
                recipients = only.get(key, set())
            else:
                recipients = {s for area in {area_of(x) for x in row.stations()} for s in by_area.get(area, ())}
            for station in recipients:
                view = tailored(row, station)
                if view is not None:
                    per_station[station][day].append([str(vid), product, row.rev, view[0], view[1]])
        out: list[Message] = []
        for station in sorted(per_station):
            out += self._batches(station, "update", per_station[station])
        return out

    def sync_answer(self, station: str, day: str, rows: dict[Key, VehicleDayRow],
                    nonce: str | None = None) -> list[Message]:
        """The catch-up a (re)connecting station asked for; its last batch says `last`. Each
        batch echoes the request's nonce, signed: the station counts itself synced only on
        an answer to a request it sent since its last (re)connect, never on a replay."""
        entries: list[list[Any]] = []
        for (vid, product, _day), row in sorted(rows.items()):
            view = tailored(row, station)
            if view is not None:
                entries.append([str(vid), product, row.rev, view[0], view[1]])
        return self._batches(station, "sync", {day: entries}, None if nonce is None else {"nonce": nonce})

    def tick(self) -> Message:
        """A signed heartbeat for every station: the feed is alive even when nothing moves."""
        body = {"kind": "tick", "station": "*", "day": "", "seq": self._tick_seq.next(), "last": True, "entries": []}
        return topics.USAGE_TICK, self._sign(body)
