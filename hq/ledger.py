"""The national usage ledger: per vehicle, per quota day, per product, the litres each station
dispensed, plus the fills in progress (reservations), in PostgreSQL.

It is fed by the collector's exactly-once path: a transaction row is inserted only if its
id is new (ON CONFLICT DO NOTHING ... RETURNING), and only the rows actually inserted add to
the usage counters, in the same database transaction. Several collector processes on one
MQTT shared subscription can therefore take any message, twice or concurrently, and a
fill is still counted once. Rows are always touched in key order, so two processes never
deadlock on each other; a deadlock or serialisation failure is retried anyway.

Quota days are the stations' own (the record's `quota.day`, WIB/WITA/WIT as the station
computed it), never headquarters' clock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from psycopg import errors

from hq.db import area_of, connect, from_db_id, to_db_id

Key = tuple[int, str, str]  # vehicle id (unsigned), product, quota day (YYYY-MM-DD)
RESERVATION_TTL = dt.timedelta(minutes=30)  # an open reservation never closed stops counting
RETRIES = 5


@dataclass(frozen=True)
class QuotaAlert:
    vehicle_id: str
    product: str
    day: str
    total_ml: int
    limit_ml: int
    stations: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"alert": "quota_exceeded_across_stations", "vehicle_id": self.vehicle_id,
                "product": self.product, "day": self.day, "total_ml": self.total_ml,
                "limit_ml": self.limit_ml, "stations": list(self.stations)}


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int
    alerts: list[QuotaAlert]
    touched: list[Key] = field(default_factory=list)  # vehicle-days whose usage changed


@dataclass(frozen=True)
class Reservation:
    station: str
    tx_id: str
    vehicle_id: int
    product: str
    day: str
    ml: int
    open: bool


@dataclass
class VehicleDayRow:
    """A vehicle-day as the ledger knows it now."""

    rev: int
    used: dict[str, int] = field(default_factory=dict)  # station -> ml
    reservations: list[tuple[str, int, int]] = field(default_factory=list)  # (station, ml, rev), oldest first

    def stations(self) -> set[str]:
        return set(self.used) | {s for s, _, _ in self.reservations}


def _key_arrays(keys: list[Key]) -> tuple[list[int], list[str], list[str]]:
    return [to_db_id(k[0]) for k in keys], [k[1] for k in keys], [k[2] for k in keys]


_KEYS = "unnest(%s::bigint[], %s::text[], %s::date[]) AS k(vehicle_id, product, day)"

_INSERT_TX = """
INSERT INTO tx (tx_id, station, vehicle_id, product, day, dispensed_ml, limit_ml, record, collector)
SELECT t.*, %s FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::date[], %s::bigint[],
                           %s::bigint[], %s::text[])
    AS t(tx_id, station, vehicle_id, product, day, dispensed_ml, limit_ml, record)
ORDER BY t.tx_id
ON CONFLICT (tx_id) DO NOTHING
RETURNING tx_id, station, vehicle_id, product, day::text, dispensed_ml, limit_ml
"""

_ADD_USAGE = """
INSERT INTO usage (vehicle_id, product, day, station, used_ml, fills)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::text[], %s::bigint[], %s::int[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (vehicle_id, product, day, station)
DO UPDATE SET used_ml = usage.used_ml + excluded.used_ml, fills = usage.fills + excluded.fills
"""

_CLOSE_RESERVATIONS = """
INSERT INTO reservation (tx_id, station, vehicle_id, product, day, ml, rev, open)
SELECT t.*, 0, 0, false FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::date[])
    AS t(tx_id, station, vehicle_id, product, day)
ORDER BY t.tx_id
ON CONFLICT (tx_id) DO UPDATE SET open = false
"""

_BUMP = """
INSERT INTO vehicle_day (vehicle_id, product, day, rev, limit_ml, updated_at)
SELECT k.vehicle_id, k.product, k.day, nextval('usage_rev'), k.limit_ml, clock_timestamp()
FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::bigint[]) AS k(vehicle_id, product, day, limit_ml)
ORDER BY 1, 2, 3
ON CONFLICT (vehicle_id, product, day) DO UPDATE
SET rev = excluded.rev, updated_at = excluded.updated_at,
    limit_ml = greatest(vehicle_day.limit_ml, excluded.limit_ml)
"""

_OVER_LIMIT = f"""
SELECT u.vehicle_id, u.product, u.day::text, sum(u.used_ml), max(v.limit_ml), string_agg(u.station, ',')
FROM usage u JOIN {_KEYS} USING (vehicle_id, product, day)
JOIN vehicle_day v USING (vehicle_id, product, day)
GROUP BY u.vehicle_id, u.product, u.day
HAVING count(*) > 1 AND sum(u.used_ml) > max(v.limit_ml) AND max(v.limit_ml) > 0
"""


class LedgerStore:
    """One process's connection to the ledger. Not thread-safe: one per worker thread."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.db = connect(dsn)

    def close(self) -> None:
        self.db.close()

    def _retrying(self, work: Any) -> Any:
        for attempt in range(RETRIES):
            try:
                with self.db.transaction():
                    return work()
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    # --- transactions (the collector's exactly-once path) ------------------------------

    def store(self, records: list[dict[str, Any]], collector: str, raw: list[str] | None = None) -> StoreResult:
        """records: parsed and unique by tx_id. raw: as received (stored verbatim)."""
        texts = raw if raw is not None else [_dumps(r) for r in records]
        return self._retrying(lambda: self._store(records, collector, texts))  # type: ignore[no-any-return]

    def _store(self, records: list[dict[str, Any]], collector: str, texts: list[str]) -> StoreResult:
        cols: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
        for r, text in zip(records, texts, strict=True):
            for col, value in zip(cols, (r["tx_id"], r["station"], to_db_id(int(r["vehicle_id"])), r["product"],
                                         r["quota"]["day"], r["dispensed_ml"], r["quota"]["limit_ml"], text),
                                  strict=True):
                col.append(value)
        new = self.db.execute(_INSERT_TX, (collector, *cols)).fetchall()
        if not new:
            return StoreResult(0, len(records), [])
        sums: dict[tuple[int, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        limits: dict[tuple[int, str, str], int] = {}
        for _tx, station, vid, product, day, ml, limit in new:
            acc = sums[(vid, product, day, station)]
            acc[0] += ml
            acc[1] += 1
            limits[(vid, product, day)] = max(limits.get((vid, product, day), 0), limit)
        ukeys = sorted(sums)
        self.db.execute(_ADD_USAGE, ([k[0] for k in ukeys], [k[1] for k in ukeys], [k[2] for k in ukeys],
                                     [k[3] for k in ukeys], [sums[k][0] for k in ukeys], [sums[k][1] for k in ukeys]))
        closing = sorted(new)
        self.db.execute(_CLOSE_RESERVATIONS, ([r[0] for r in closing], [r[1] for r in closing],
                                              [r[2] for r in closing], [r[3] for r in closing],
                                              [r[4] for r in closing]))
        self._bump(limits)
        keys = sorted(limits)
        alerts = self._alerts(keys)
        touched = [(from_db_id(v), p, d) for v, p, d in keys]
        return StoreResult(len(new), len(records) - len(new), alerts, touched)

    def _bump(self, limits: dict[tuple[int, str, str], int]) -> None:
        keys = sorted(limits)
        self.db.execute(_BUMP, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                                [limits[k] for k in keys]))

    def _alerts(self, keys: list[tuple[int, str, str]]) -> list[QuotaAlert]:
        """Litres beyond the limit across stations (a partition's overspend, within the bound)."""
        alerts = []
        rows = self.db.execute(_OVER_LIMIT, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]))
        for vid, product, day, total, limit, stations in rows.fetchall():
            names = tuple(sorted(str(stations).split(",")))
            changed = self.db.execute(
                "INSERT INTO alerts (vehicle_id, product, day, total_ml, limit_ml, stations) VALUES"
                " (%s, %s, %s, %s, %s, %s) ON CONFLICT (vehicle_id, product, day) DO UPDATE SET"
                " total_ml = excluded.total_ml, stations = excluded.stations"
                " WHERE alerts.total_ml != excluded.total_ml",
                (vid, product, day, total, limit, ",".join(names))).rowcount
            if changed:
                alerts.append(QuotaAlert(str(from_db_id(vid)), product, day, int(total), int(limit), names))
        return alerts

    # --- reservations --------------------------------------------------------------------

    def reserve(self, items: list[Reservation]) -> list[Key]:
        """Open and close fills in progress; returns the vehicle-days that changed."""
        return self._retrying(lambda: self._reserve(items))  # type: ignore[no-any-return]

    def _reserve(self, items: list[Reservation]) -> list[Key]:
        changed: dict[tuple[int, str, str], int] = {}
        opened: list[str] = []
        for item in sorted(items, key=lambda r: (r.tx_id, not r.open)):
            vid = to_db_id(item.vehicle_id)
            if item.open:
                sql = ("INSERT INTO reservation (tx_id, station, vehicle_id, product, day, ml, rev, open)"
                       " VALUES (%s, %s, %s, %s, %s, %s, 0, true) ON CONFLICT (tx_id) DO NOTHING")
            else:
                sql = ("INSERT INTO reservation (tx_id, station, vehicle_id, product, day, ml, rev, open)"
                       " VALUES (%s, %s, %s, %s, %s, %s, 0, false) ON CONFLICT (tx_id) DO UPDATE SET open = false"
                       " WHERE reservation.open")
            if self.db.execute(sql, (item.tx_id, item.station, vid, item.product, item.day, item.ml)).rowcount:
                changed[(vid, item.product, item.day)] = 0
                if item.open:
                    opened.append(item.tx_id)
        if changed:
            self._bump(changed)
        if opened:
            # A fill's revision is drawn only now, holding its vehicle-day's row (the bump
            # above): two processes opening fills of one vehicle at once then draw them in the
            # order they commit, so the one committed second sees the first in its snapshot
            # with a lower revision and is told to yield. Drawn at the insert, the order could
            # invert, and neither would be told (a copied QR filling twice).
            self.db.execute("UPDATE reservation SET rev = nextval('usage_rev') WHERE tx_id = ANY(%s)",
                            (sorted(opened),))
        return [(from_db_id(v), p, d) for v, p, d in sorted(changed)]

    # --- what the usage feed reads ---------------------------------------------------------

    def snapshot(self, keys: list[Key]) -> dict[Key, VehicleDayRow]:
        """The vehicle-days as they stand now (read after the commit that changed them)."""
        if not keys:
            return {}
        args = _key_arrays(keys)
        rows: dict[Key, VehicleDayRow] = {}
        for vid, product, day, rev in self.db.execute(
                f"SELECT v.vehicle_id, v.product, v.day::text, v.rev FROM vehicle_day v JOIN {_KEYS}"
                " USING (vehicle_id, product, day)", args):
            rows[(from_db_id(vid), product, day)] = VehicleDayRow(rev)
        for vid, product, day, station, ml in self.db.execute(
                f"SELECT u.vehicle_id, u.product, u.day::text, u.station, u.used_ml FROM usage u JOIN {_KEYS}"
                " USING (vehicle_id, product, day)", args):
            row = rows.get((from_db_id(vid), product, day))
            if row is not None:
                row.used[station] = int(ml)
        for vid, product, day, station, ml, rev in self.db.execute(
                f"SELECT r.vehicle_id, r.product, r.day::text, r.station, r.ml, r.rev FROM reservation r JOIN {_KEYS}"
                " USING (vehicle_id, product, day) WHERE r.open AND r.opened_at > clock_timestamp() - %s"
                " ORDER BY r.rev", (*args, RESERVATION_TTL)):
            row = rows.get((from_db_id(vid), product, day))
            if row is not None:
                row.reservations.append((station, int(ml), int(rev)))
        return rows

    def area_keys(self, area: str, day: str, since: dt.datetime | None) -> list[Key]:
        """Vehicle-days with usage or fills in progress at any station of `area` on `day`,
        changed since `since` (a reconnecting station's catch-up)."""
        # Station by station through the (station, day) indexes: a day's whole usage is
        # millions of rows nationally, an area's a few thousand.
        rows = self.db.execute(
            "SELECT DISTINCT v.vehicle_id, v.product, v.day::text FROM station s"
            " CROSS JOIN LATERAL (SELECT vehicle_id, product, day FROM usage u"
            "                     WHERE u.station = s.station AND u.day = %(day)s"
            "                     UNION ALL SELECT vehicle_id, product, day FROM reservation r"
            "                     WHERE r.station = s.station AND r.day = %(day)s AND r.open) AS x"
            " JOIN vehicle_day v ON (v.vehicle_id, v.product, v.day) = (x.vehicle_id, x.product, x.day)"
            " WHERE s.area = %(area)s AND (%(since)s::timestamptz IS NULL OR v.updated_at > %(since)s::timestamptz)",
            {"day": day, "area": area, "since": since}).fetchall()
        return sorted((from_db_id(v), p, d) for v, p, d in rows)

    # --- the feed's sequences ----------------------------------------------------------------

    def reserve_seqs(self, publisher: str, slot: str, count: int) -> int:
        """The highest number of a new block of `count` for this publisher's slot (committed
        before any of it is used: a crash can only skip numbers, never reuse one)."""
        row = self._retrying(lambda: self.db.execute(
            "INSERT INTO feed_seq (publisher, slot, high) VALUES (%s, %s, %s) ON CONFLICT (publisher, slot)"
            " DO UPDATE SET high = feed_seq.high + excluded.high RETURNING high",
            (publisher, slot, count)).fetchone())
        return int(row[0])

    # --- stations ----------------------------------------------------------------------------

    def register(self, stations: dict[str, str]) -> None:
        """station -> zone, seen now."""
        items = sorted(stations.items())
        self._retrying(lambda: self.db.execute(
            "INSERT INTO station (station, area, zone) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
            " ORDER BY 1 ON CONFLICT (station) DO UPDATE SET zone = excluded.zone, last_seen = clock_timestamp()",
            ([s for s, _ in items], [area_of(s) for s, _ in items], [z for _, z in items])))

    def stations_in(self, areas: list[str]) -> dict[str, list[str]]:
        """The registered stations of these areas (read per batch: another ledger process may
        have registered one a moment ago)."""
        out: dict[str, list[str]] = defaultdict(list)
        for station, area in self.db.execute("SELECT station, area FROM station WHERE area = ANY(%s)", (areas,)):
            out[area].append(station)
        return dict(out)

    def stations_by_area(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for station, area in self.db.execute("SELECT station, area FROM station ORDER BY station"):
            out[area].append(station)
        return dict(out)

    # --- the collector's reports -------------------------------------------------------------

    def count(self) -> int:
        return int(self._one("SELECT count(*) FROM tx"))

    def tx_ids(self) -> list[str]:
        ids = [str(r[0]) for r in self.db.execute("SELECT tx_id FROM tx ORDER BY tx_id")]
        return ids

    def by_collector(self) -> dict[str, int]:
        out = {str(c): int(n) for c, n in self.db.execute("SELECT collector, count(*) FROM tx GROUP BY collector")}
        return out

    def alerts(self) -> list[QuotaAlert]:
        rows = self.db.execute("SELECT vehicle_id, product, day::text, total_ml, limit_ml, stations FROM alerts"
                               " ORDER BY day, vehicle_id, product").fetchall()
        return [QuotaAlert(str(from_db_id(v)), p, d, int(t), int(lim), tuple(str(s).split(",")))
                for v, p, d, t, lim, s in rows]

    def used_by_station(self, vehicle_id: int, product: str, day: str) -> dict[str, int]:
        rows = self.db.execute("SELECT station, used_ml FROM usage WHERE vehicle_id = %s AND product = %s"
                               " AND day = %s", (to_db_id(vehicle_id), product, day)).fetchall()
        return {str(s): int(ml) for s, ml in rows}

    def _one(self, sql: str) -> Any:
        row = self.db.execute(sql).fetchone()
        return None if row is None else row[0]


def _dumps(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, separators=(",", ":"))


