"""Headquarters' PostgreSQL: connection and schema (idempotent, applied by every process at start).

One database holds the collector's transactions and the national usage ledger, so a
transaction and the usage it adds commit together: acknowledged means counted.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS tx (
    tx_id text PRIMARY KEY,
    station text NOT NULL,
    vehicle_id bigint NOT NULL,
    product text NOT NULL,
    day date NOT NULL,
    dispensed_ml bigint NOT NULL,
    limit_ml bigint NOT NULL,
    record text NOT NULL,
    collector text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE SEQUENCE IF NOT EXISTS usage_rev;
-- Litres one station dispensed to one vehicle on one quota day: the counter stations merge.
CREATE TABLE IF NOT EXISTS usage (
    vehicle_id bigint NOT NULL,
    product text NOT NULL,
    day date NOT NULL,
    station text NOT NULL,
    used_ml bigint NOT NULL,
    fills integer NOT NULL,
    PRIMARY KEY (vehicle_id, product, day, station)
);
CREATE INDEX IF NOT EXISTS usage_station_day ON usage (station, day);
-- Fills in progress. A closed reservation stays as a tombstone, so an `open` that arrives
-- after its `close` (another ledger process took it) cannot bring it back.
CREATE TABLE IF NOT EXISTS reservation (
    tx_id text PRIMARY KEY,
    station text NOT NULL,
    vehicle_id bigint NOT NULL,
    product text NOT NULL,
    day date NOT NULL,
    ml bigint NOT NULL,
    rev bigint NOT NULL,
    open boolean NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS reservation_open ON reservation (vehicle_id, product, day) WHERE open;
CREATE INDEX IF NOT EXISTS reservation_station_day ON reservation (station, day);
-- One revision per vehicle-day, bumped by every change: stations take reservations from the
-- highest revision they have seen, and a reconnecting station asks for what changed since.
CREATE TABLE IF NOT EXISTS vehicle_day (
    vehicle_id bigint NOT NULL,
    product text NOT NULL,
    day date NOT NULL,
    rev bigint NOT NULL,
    limit_ml bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (vehicle_id, product, day)
);
CREATE INDEX IF NOT EXISTS vehicle_day_updated ON vehicle_day (day, updated_at);
CREATE TABLE IF NOT EXISTS station (
    station text PRIMARY KEY,
    area text NOT NULL,
    zone text NOT NULL DEFAULT '',
    last_seen timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS station_area ON station (area);
-- The usage feed's sequences per publisher (a ledger process's name) and slot (station
-- batches, ticks): stations refuse a batch not above the last they took, so a restarted
-- ledger must go on above anything it signed before.
CREATE TABLE IF NOT EXISTS feed_seq (
    publisher text NOT NULL,
    slot text NOT NULL,
    high bigint NOT NULL,
    PRIMARY KEY (publisher, slot)
);
CREATE TABLE IF NOT EXISTS alerts (
    vehicle_id bigint NOT NULL,
    product text NOT NULL,
    day date NOT NULL,
    total_ml bigint NOT NULL,
    limit_ml bigint NOT NULL,
    stations text NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (vehicle_id, product, day)
);
"""

# Several processes may start at once against a new database: one migrates at a time.
MIGRATION_LOCK = 7_400_015


def connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    # Autocommit: reads end at once (no idle transaction holding back vacuum); writes use
    # explicit `with conn.transaction()` blocks.
    conn = psycopg.connect(dsn, autocommit=True)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(SCHEMA)
    return conn


def to_db_id(vehicle_id: int) -> int:
    """Unsigned 64-bit vehicle id -> PostgreSQL's signed bigint (two's complement)."""
    return vehicle_id - (1 << 64) if vehicle_id >= 1 << 63 else vehicle_id


def from_db_id(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def area_of(station: str) -> str:
    """A station's area for the usage feed: the first two parts of its number (`34.401` for
    34.401.01: region and regency, about 500 areas of ~15 stations nationally)."""
    parts = station.split(".")
    return ".".join(parts[:2]) if len(parts) >= 3 else station
