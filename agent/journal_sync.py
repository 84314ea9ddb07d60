"""Group commit for the journal: a close is made durable off the station loop.

An SD card takes milliseconds to tens of milliseconds per fdatasync. The session row must
be on the card before the relay closes (that commit syncs in the scan's path), but a
session's close only has to be on the card before its record leaves for headquarters. So a
close commits without a sync (SQLite WAL, synchronous=NORMAL: the frames are in the page
cache, safe against a crash of the process, not yet against a power cut) and this thread
makes it durable:

- if another durable commit (the next scan's session row) syncs the WAL within
  `group_s`, that sync covers the close too (the WAL is one append-only file): no fsync
  of its own;
- otherwise it fdatasyncs the WAL itself; at once, without the group wait, for an
  `urgent` commit (a payment step the terminal is waiting for, `Journal.lazy`).

Until then the journal holds the close's outbox rows back (`Journal.outbox_pending`), so
headquarters never hears of a sale the station could still lose. A power cut before the
sync leaves the session open, and recovery closes it from the board's own count, as after
any crash before the close.

The same thread checkpoints the WAL into the database file every `checkpoint_commits`
commits (about 1,000 fills, a WAL of ~10 MB: a checkpoint costs three syncs, the WAL's, the
database file's and the restarted WAL's header, and rewrites the hot pages once, so fewer
checkpoints mean fewer syncs and fewer bytes per fill) (SQLite's automatic checkpoint is
off: it would run inside whichever commit crossed the limit, often a scan's). A checkpoint
is a PASSIVE one on a connection of its own: the station loop keeps writing meanwhile.

After a checkpoint that copied the whole WAL, the next commit starts the WAL over, and
SQLite then syncs the new WAL header before writing any frame (a second sync in that
commit: if it were a scan's, the scan would wait for two syncs; if a close's or an
acknowledgement's, the station loop would stall for one while a scan on another pump
waited behind it). So this thread makes that first commit itself, right after the
checkpoint, holding `write_lock` (which the journal takes around each of its write
transactions: a scan arriving meanwhile waits on a lock, not on SQLite's busy sleeps).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

GROUP_S = 0.2
CHECKPOINT_COMMITS = 3000


class WalSyncer:
    def __init__(self, db_path: Path, group_s: float = GROUP_S, checkpoint_commits: int = CHECKPOINT_COMMITS,
                 on_durable: Callable[[], None] | None = None) -> None:
        self._db_path = db_path
        self._on_durable = on_durable  # wakes the station loop: held rows may be sent now
        self._wal_path = Path(str(db_path) + "-wal")
        self.group_s = group_s
        self.checkpoint_commits = checkpoint_commits
        self._checkpointed_at = 0  # commit number of the last checkpoint
        self._cond = threading.Condition()
        # Held around every write transaction on the journal (the station loop's and ours).
        self.write_lock = threading.RLock()
        self._committed = 0  # commits counted by the journal (lazy or durable)
        self._durable = 0  # every commit up to this one is on the card
        self._wanted = 0  # a lazy commit that must become durable
        self._urgent = 0  # a lazy commit that must become durable without the group wait
        self._stop = False
        self.fsyncs = 0  # our own fdatasyncs (the durable commits' are SQLite's)
        self.checkpoints = 0
        self.restarts = 0  # WAL restarts made here (a header sync off the station loop)
        # Kept open: a new connection's first sync of the WAL also syncs the directory.
        self._ckpt_db: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="journal-sync", daemon=True)
        self._thread.start()

    # --- called by the journal (station loop) ----------------------------------------------

    def committed(self, durable: bool, wanted: bool, urgent: bool = False) -> int:
        """Count a commit. `durable`: SQLite synced the WAL in it (so every commit before is
        durable too). `wanted`: a lazy commit to make durable soon; `urgent`: at once, not
        after the group wait (something waits on it: a request to the payment terminal).
        Returns its number."""
        with self._cond:
            self._committed += 1
            number = self._committed
            if durable:
                self._durable = number
            elif wanted:
                self._wanted = number
                if urgent:
                    self._urgent = number
            self._cond.notify_all()
            return number

    def is_durable(self, number: int) -> bool:
        with self._cond:
            return self._durable >= number

    def wait_durable(self, number: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._durable >= number, timeout_s)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self._ckpt_db is not None:
                self._ckpt_db.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or self._wanted > self._durable or self._checkpoint_due())
                owed = self._wanted > self._durable
                if self._stop and not owed:
                    return
                target = self._wanted
                if owed and not self._stop and self._urgent <= self._durable:
                    # Group commit: a durable commit within group_s covers this one as well
                    # (cut short when an urgent commit comes meanwhile).
                    self._cond.wait_for(lambda: self._durable >= target or self._urgent > self._durable,  # noqa: B023
                                        self.group_s)
                need_sync = self._durable < max(target, self._urgent)
                target = self._committed  # what is in the WAL now: a sync covers all of it
            if need_sync:
                self._sync_wal()
                with self._cond:
                    self._durable = max(self._durable, target)
                    self._cond.notify_all()
                if self._on_durable is not None:
                    self._on_durable()
            self._maybe_checkpoint()

    def _checkpoint_due(self) -> bool:
        return self._committed - self._checkpointed_at >= self.checkpoint_commits

    def _sync_wal(self) -> None:
        fd = os.open(self._wal_path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # releases the GIL: the station loop goes on meanwhile
            self.fsyncs += 1
        finally:
            os.close(fd)

    def _maybe_checkpoint(self) -> None:
        with self._cond:
            if not self._checkpoint_due():
                return
            self._checkpointed_at = self._committed
        started = time.monotonic()
        if self._ckpt_db is None:
            self._ckpt_db = sqlite3.connect(str(self._db_path), timeout=5, isolation_level=None)
        db = self._ckpt_db
        try:
            db.execute("PRAGMA synchronous=FULL")
            busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            log.debug("journal checkpoint: %s of %s frames in %.3f s (busy %s)", done, frames,
                      time.monotonic() - started, busy)
            if not busy and frames > 0 and done == frames:
                self._restart_wal(db)
        except sqlite3.Error as exc:
            log.warning("journal checkpoint failed: %s", exc)

    def _restart_wal(self, db: sqlite3.Connection) -> None:
        """The first commit after a complete checkpoint, made here: SQLite starts the WAL
        over and syncs its header in it. The commit itself is not synced (NORMAL): it only
        counts restarts, and the next durable commit carries it."""
        db.execute("PRAGMA synchronous=NORMAL")
        with self.write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO meta (key, value) VALUES ('wal_restarts', '1')"
                           " ON CONFLICT DO UPDATE SET value = CAST(value AS INTEGER) + 1")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        self.restarts += 1
        with self._cond:
            self._committed += 1  # a commit like the journal's: a later sync covers it
