"""Crash-safe journal: SQLite in WAL mode with synchronous=FULL.

Every state change is committed before its effect becomes visible: a session row and its
quota reservation are synced before the relay closes; the closed session, the quota
actually used and the outbox row that reports it are one transaction, made durable by the
group-commit thread (agent/journal_sync.py) before that row may leave for headquarters.
Two fdatasyncs per fill, no more: deleting acknowledged outbox rows commits without a sync
of its own (losing it to a power cut is harmless: an unacknowledged row is sent again and
headquarters drops repeats), and the next sync carries it. A session is journaled open
(authorised) and closed, nothing in between: recovery closes an open session from the
board's count whether fuel flowed or not, so a 'fuelling' row would only cost writes.
(Journals written before may still hold sessions in state 'fuelling': open, like
'authorised'.)

New journals use 512-byte pages: a fill changes ~15 b-tree pages, and the WAL writes each
changed page whole, so small pages keep an SD card's writes per fill small. (Journals
created before keep their page size; SQLite cannot change it in WAL mode.)
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.journal_sync import CHECKPOINT_COMMITS, WalSyncer

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id TEXT UNIQUE NOT NULL,
    pump INTEGER NOT NULL,
    vehicle_id INTEGER NOT NULL,
    plate TEXT NOT NULL,
    product TEXT NOT NULL,
    quota_day TEXT NOT NULL,
    limit_ml INTEGER NOT NULL,
    quota_before_ml INTEGER NOT NULL,
    preset_ml INTEGER NOT NULL,
    reserved_ml INTEGER NOT NULL,
    price_idr INTEGER NOT NULL,
    state TEXT NOT NULL,
    dispensed_ml INTEGER NOT NULL DEFAULT 0,
    amount_idr INTEGER NOT NULL DEFAULT 0,
    end_reason TEXT NOT NULL DEFAULT '',
    opened_at REAL NOT NULL,
    closed_at REAL,
    device_total_before INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(state) WHERE state != 'closed';
CREATE INDEX IF NOT EXISTS sessions_day ON sessions(quota_day, product);
CREATE TABLE IF NOT EXISTS quota (
    vehicle_id INTEGER NOT NULL,
    product TEXT NOT NULL,
    day TEXT NOT NULL,
    used_ml INTEGER NOT NULL DEFAULT 0,
    reserved_ml INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vehicle_id, product, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT UNIQUE NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

STATE_AUTHORISED = "authorised"
PAGE_SIZE = 512


def to_db_id(vehicle_id: int) -> int:
    """Unsigned 64-bit vehicle id -> SQLite's signed 64-bit INTEGER (two's complement)."""
    return vehicle_id - (1 << 64) if vehicle_id >= 1 << 63 else vehicle_id


def from_db_id(value: int) -> int:
    return value + (1 << 64) if value < 0 else value

def encode_payload(payload: dict[str, Any]) -> bytes:
    """An outbox row's payload as stored: a transaction record (~700 bytes of JSON) deflated
    to fit one 512-byte page with no overflow page: fewer pages written per fill."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    if len(raw) < 256:
        return raw
    packed = zlib.compress(raw, 6)
    return packed if len(packed) < len(raw) else raw


def decode_payload(stored: bytes) -> bytes:
    """What is published: the JSON. (A zlib stream starts with 0x78, JSON never does.)"""
    return zlib.decompress(stored) if stored[:1] == b"\x78" else stored


def insert_outbox(db: sqlite3.Connection, msg_id: str, topic: str, payload: dict[str, Any]) -> None:
    """Queue a message for headquarters inside the caller's transaction."""
    db.execute("INSERT INTO outbox (msg_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
               (msg_id, topic, encode_payload(payload), time.time()))


STATE_FUELLING = "fuelling"
STATE_CLOSED = "closed"


@dataclass(frozen=True)
class SessionRow:
    seq: int
    tx_id: str
    pump: int
    vehicle_id: int
    plate: str
    product: str
    quota_day: str
    limit_ml: int
    quota_before_ml: int
    preset_ml: int
    reserved_ml: int
    price_idr: int
    state: str
    opened_at: float
    device_total_before: int | None = None  # the device's own totaliser when authorised, if known


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    msg_id: str
    topic: str
    payload: bytes


class Journal:
    def __init__(self, path: Path, on_durable: Callable[[], None] | None = None, group_commit: bool = False) -> None:
        """`group_commit`: closes commit without a sync and the WalSyncer makes them durable
        before their outbox rows are handed out (the station); without it every close is
        synced in its own commit (tools and simulators that pump the outbox right after)."""
        self.path = path
        self.group_commit = group_commit
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        if group_commit:  # the WalSyncer checkpoints, off the scan path; others keep SQLite's own
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
        if "device_total_before" not in columns:  # journals written before this column existed
            self._db.execute("ALTER TABLE sessions ADD COLUMN device_total_before INTEGER")
        self._sync_wal_at_open()
        self._syncer = WalSyncer(path, on_durable=on_durable,
                                 checkpoint_commits=CHECKPOINT_COMMITS if group_commit else 1 << 62)
        # Outbox rows of closes not yet durable: (commit number, first outbox seq), in order.
        self._held: list[tuple[int, int]] = []
        self._last_commit = 0
        self._meta_seen: dict[str, str] = dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def _sync_wal_at_open(self) -> None:
        """What a killed agent committed without a sync is in the page cache, not surely on
        the card: sync it before anything read from the journal is sent anywhere."""
        wal = Path(str(self.path) + "-wal")
        if wal.exists():
            fd = os.open(wal, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._syncer.close()
        self._db.close()

    @property
    def syncer(self) -> WalSyncer:
        return self._syncer

    def pragma(self, name: str) -> Any:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read, for modules that keep their own tables in this journal (payments)."""
        return self._db.execute(sql, params).fetchall()

    def read_dicts(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        cur = self._db.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def atomic(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One transaction for modules that keep their own tables in this journal, synced
        before it returns (rare writes: an attendant's sign-in)."""
        return self._tx()

    @contextmanager
    def lazy(self, urgent: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction whose effects can wait for it to reach the card (payments: a
        request goes to the terminal only once its step row is durable). With group
        commit it commits without a sync, so the station loop never waits on the card: the
        sync thread makes it durable (at once if `urgent`, else within the group-commit
        window), outbox rows it queued are held until then, and `is_durable(last_commit)`
        tells when. Without group commit: synced in place."""
        if not self.group_commit:
            with self._tx() as db:
                yield db
            return
        first: list[int] = []
        with self._tx(durable=False, outbox_from=first, urgent=urgent) as db:
            top = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
            yield db
            first.append(top + 1)  # rows this transaction queued, if any, come after `top`

    @property
    def last_commit(self) -> int:
        """Number of the latest commit that wrote something (see `is_durable`)."""
        return self._last_commit

    def is_durable(self, number: int) -> bool:
        return self._syncer.is_durable(number)

    @contextmanager
    def _tx(self, durable: bool = True, outbox_from: list[int] | None = None,
            urgent: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction. `durable`: SQLite syncs the WAL before COMMIT returns; else the
        commit is synced later (by the group-commit thread when `outbox_from` is given,
        which then receives the first outbox seq the transaction inserted; at once if
        `urgent`; else by whatever sync comes next)."""
        level = int(self._db.execute("PRAGMA synchronous").fetchone()[0]) if not durable else 0
        lowered = level > 1  # FULL (2) or EXTRA (3) -> NORMAL (1) for this commit only
        if lowered:
            self._db.execute("PRAGMA synchronous=NORMAL")
        changes = self._db.total_changes
        try:
            with self._syncer.write_lock:  # not while the sync thread restarts the WAL
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        finally:
            if lowered:
                self._db.execute(f"PRAGMA synchronous={level}")
        if self._db.total_changes == changes:
            return  # nothing written, nothing synced
        wanted = bool(outbox_from) and not durable
        number = self._syncer.committed(durable, wanted, urgent)
        self._last_commit = number
        if wanted and outbox_from:
            self._held.append((number, outbox_from[0]))

    # --- quota -------------------------------------------------------------------------

    def quota_used(self, vehicle_id: int, product: str, day: str) -> tuple[int, int]:
        """(dispensed ml, reserved ml) for a vehicle, product and local day."""
        row = self._db.execute(
            "SELECT used_ml, reserved_ml FROM quota WHERE vehicle_id=? AND product=? AND day=?",
            (to_db_id(vehicle_id), product, day),
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    # --- sessions ----------------------------------------------------------------------

    def open_session(
        self,
        station: str,
        pump: int,
        vehicle_id: int,
        plate: str,
        product: str,
        day: str,
        limit_ml: int,
        quota_before_ml: int,
        preset_ml: int,
        price_idr: int,
        device_total_before: int | None = None,
        extra: Callable[[sqlite3.Connection, int, str], None] | None = None,
    ) -> SessionRow:
        """Journal a session and reserve its preset against the day's quota, atomically."""
        now = time.time()
        with self._tx() as db:
            # The seq AUTOINCREMENT would give, read inside the write transaction: the row goes
            # in with its tx_id at once (an insert with '' and an update after would change
            # two pages of the tx_id index, one more page written per fill).
            seq = 1 + max(int(v or 0) for v in db.execute(
                "SELECT (SELECT seq FROM sqlite_sequence WHERE name='sessions'), (SELECT MAX(seq) FROM sessions)"
            ).fetchone())
            tx_id = f"{station}-{seq:08d}"
            db.execute(
                "INSERT INTO sessions (seq, tx_id, pump, vehicle_id, plate, product, quota_day, limit_ml,"
                " quota_before_ml, preset_ml, reserved_ml, price_idr, state, opened_at, device_total_before)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, tx_id, pump, to_db_id(vehicle_id), plate, product, day, limit_ml, quota_before_ml, preset_ml,
                 preset_ml, price_idr, STATE_AUTHORISED, now, device_total_before),
            )
            db.execute(
                "INSERT INTO quota (vehicle_id, product, day, reserved_ml) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET reserved_ml = reserved_ml + excluded.reserved_ml",
                (to_db_id(vehicle_id), product, day, preset_ml),
            )
            if extra is not None:  # e.g. link the prepayment that pays for this session
                extra(db, seq, tx_id)
        return SessionRow(seq, tx_id, pump, vehicle_id, plate, product, day, limit_ml,
                          quota_before_ml, preset_ml, preset_ml, price_idr, STATE_AUTHORISED, now,
                          device_total_before)

    def close_session(
        self,
        session: SessionRow,
        dispensed_ml: int,
        amount_idr: int,
        end_reason: str,
        outbox: tuple[str, str, dict[str, Any]] | None,
        meta: dict[str, str] | None = None,
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Close a session: record litres, move quota from reserved to used, queue its report.
        Committed without a sync of its own; its outbox row is held back until the
        group-commit thread (or the next durable commit) has it on the card."""
        first_outbox: list[int] = []
        with self._tx(durable=not self.group_commit, outbox_from=first_outbox) as db:
            updated = db.execute(
                "UPDATE sessions SET state=?, dispensed_ml=?, amount_idr=?, end_reason=?, closed_at=?"
                " WHERE seq=? AND state != ?",
                (STATE_CLOSED, dispensed_ml, amount_idr, end_reason, time.time(), session.seq,
                 STATE_CLOSED),
            ).rowcount
            if updated != 1:
                raise ValueError(f"session {session.tx_id} is not open")
            db.execute(
                "UPDATE quota SET used_ml = used_ml + ?, reserved_ml = reserved_ml - ?"
                " WHERE vehicle_id=? AND product=? AND day=?",
                (dispensed_ml, session.reserved_ml, to_db_id(session.vehicle_id), session.product,
                 session.quota_day),
            )
            for key, value in (meta or {}).items():
                if self._meta_seen.get(key) == value:
                    continue  # unchanged (the same quota day all day): no page to write
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                           " ON CONFLICT DO UPDATE SET value=excluded.value", (key, value))
            if extra is not None:  # e.g. keep the record until its card payment settles
                extra(db)
            if outbox is not None:
                msg_id, topic, payload = outbox
                cur = db.execute(
                    "INSERT INTO outbox (msg_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                    (msg_id, topic, encode_payload(payload), time.time()),
                )
                first_outbox.append(int(cur.lastrowid or 0))
            if not first_outbox:  # nothing to publish, but the close should reach the card soon
                first_outbox.append(1 << 62)
        self._meta_seen.update(meta or {})

    def open_sessions(self) -> list[SessionRow]:
        rows = self._db.execute(
            "SELECT seq, tx_id, pump, vehicle_id, plate, product, quota_day, limit_ml,"
            " quota_before_ml, preset_ml, reserved_ml, price_idr, state, opened_at, device_total_before"
            # The literal (not a parameter) and no ORDER BY let SQLite answer from the
            # partial index of open sessions: start-up never reads the history.
            " FROM sessions WHERE state != 'closed'",
        ).fetchall()
        return sorted((SessionRow(row[0], row[1], row[2], from_db_id(row[3]), *row[4:]) for row in rows),
                      key=lambda s: s.seq)

    def dispensed_by_pump(self) -> dict[int, int]:
        rows = self._db.execute(
            "SELECT pump, SUM(dispensed_ml) FROM sessions WHERE state=? GROUP BY pump",
            (STATE_CLOSED,),
        ).fetchall()
        return {int(pump): int(total) for pump, total in rows}

    def day_totals(self, day: str) -> dict[str, dict[str, int]]:
        """Closed sales of one quota day per product (the dashboard's 'today')."""
        rows = self._db.execute(
            "SELECT product, SUM(dispensed_ml), SUM(amount_idr), COUNT(*) FROM sessions"
            " WHERE quota_day=? AND state=? AND dispensed_ml > 0 GROUP BY product",
            (day, STATE_CLOSED),
        ).fetchall()
        return {str(p): {"litres_ml": int(ml), "amount_idr": int(idr), "count": int(n)} for p, ml, idr, n in rows}

    def sales_since(self, since: float) -> list[tuple[float, str, int]]:
        """(closed_at, product, dispensed_ml) of the sales closed since a wall-clock instant
        (shift reconciliation and the litres-per-hour chart)."""
        rows = self._db.execute(
            "SELECT closed_at, product, dispensed_ml FROM sessions WHERE state=? AND closed_at >= ?"
            " AND dispensed_ml > 0 ORDER BY closed_at", (STATE_CLOSED, since)).fetchall()
        return [(float(t), str(p), int(ml)) for t, p, ml in rows]

    def recent_closed(self, limit: int) -> list[dict[str, Any]]:
        """The newest closed sessions, newest first, as the dashboard lists them."""
        rows = self._db.execute(
            "SELECT tx_id, pump, product, plate, dispensed_ml, amount_idr, end_reason, closed_at"
            " FROM sessions WHERE state=? ORDER BY seq DESC LIMIT ?",
            (STATE_CLOSED, limit),
        ).fetchall()
        return [{"tx_id": r[0], "pump": r[1], "product": r[2], "plate": r[3], "dispensed_ml": r[4],
                 "amount_idr": r[5], "end_reason": r[6], "closed_at": r[7]} for r in rows]

    # --- outbox ------------------------------------------------------------------------

    def _outbox_bound(self) -> int:
        """Rows from this seq on belong to closes not yet durable: not to be sent yet."""
        while self._held and self._syncer.is_durable(self._held[0][0]):
            self._held.pop(0)
        return min((seq for _, seq in self._held), default=1 << 62)

    def wait_durable(self, timeout_s: float = 5.0) -> bool:
        """Block until every commit so far is on the card (tests, orderly shutdown)."""
        return not self._held or self._syncer.wait_durable(self._held[-1][0], timeout_s)

    def outbox_pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        rows = self._db.execute(
            "SELECT seq, msg_id, topic, payload FROM outbox WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?",
            (after_seq, self._outbox_bound(), limit),
        ).fetchall()
        return [OutboxRow(int(s), str(m), str(t), decode_payload(bytes(p))) for s, m, t, p in rows]

    def outbox_put(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Queue records outside a session close, in one transaction (load and outage runs)."""
        now = time.time()
        with self._tx() as db:
            db.executemany("INSERT INTO outbox (msg_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                           [(m, t, encode_payload(p), now) for m, t, p in items])

    def outbox_depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_ack(self, msg_ids: list[str]) -> int:
        # One statement per acknowledgement (up to 1,000 ids), not one per id. No sync of
        # its own: a deletion a power cut undoes only sends the rows again (idempotent).
        with self._tx(durable=False) as db:
            return int(db.execute("DELETE FROM outbox WHERE msg_id IN (SELECT value FROM json_each(?))",
                                  (json.dumps(msg_ids),)).rowcount)

    # --- meta --------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT DO UPDATE SET value=excluded.value",
                (key, value),
            )
        self._meta_seen[key] = value
