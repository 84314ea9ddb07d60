"""Free space and a writable data disk: seen before they run out, and a reserve kept so
the journal can always close the fills that are running.

The data directory holds a reserve file (`reserve.space`, a few MB of zeros written and
fsynced at start). When SQLite cannot write a closing session because the disk is full, the
station deletes the reserve and tries again: the litres of a fill in flight are never lost
to someone else's log file. New sales are refused while free space is under the refusal
threshold, with a clear attendant line; the alarm is raised earlier, at the warning level.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_NAME = "reserve.space"
MB = 1024 * 1024

OK = "ok"
LOW = "low"  # under the warning level: alarm, sales go on
FULL = "full"  # under the refusal level: no new sale can be journaled safely
READ_ONLY = "read_only"  # the filesystem went read-only (ext4 errors=remount-ro, a dying card)


@dataclass(frozen=True)
class DiskPolicy:
    warn_free_mb: float = 200.0
    refuse_free_mb: float = 16.0
    reserve_mb: float = 8.0


@dataclass(frozen=True)
class DiskState:
    level: str
    free_bytes: int
    reserve_bytes: int

    @property
    def sales_allowed(self) -> bool:
        return self.level in (OK, LOW)

    def as_dict(self) -> dict[str, object]:
        return {"state": self.level, "free_mb": round(self.free_bytes / MB, 1),
                "reserve_mb": round(self.reserve_bytes / MB, 1)}


def is_disk_error(exc: BaseException) -> bool:
    """SQLite's or the OS's way of saying the disk is full or read-only (not a bug of ours)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO)
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        text = str(exc).lower()
        return any(word in text for word in ("full", "readonly", "read-only", "disk i/o", "unable to open"))
    return False


class DiskGuard:
    def __init__(self, data_dir: Path, policy: DiskPolicy) -> None:
        self.data_dir = data_dir
        self.policy = policy
        self.reserve = data_dir / RESERVE_NAME
        self.state = DiskState(OK, 0, 0)
        self._writer: threading.Thread | None = None

    def _statvfs(self) -> tuple[int, bool]:
        st = os.statvfs(self.data_dir)
        return st.f_bavail * st.f_frsize, bool(st.f_flag & os.ST_RDONLY)

    def check(self) -> DiskState:
        try:
            free, read_only = self._statvfs()
        except OSError as exc:
            log.warning("cannot read free space of %s: %s", self.data_dir, exc)
            return self.state
        reserve = self._reserve_size()
        if read_only:
            level = READ_ONLY
        elif free < self.policy.refuse_free_mb * MB:
            level = FULL
        elif free < self.policy.warn_free_mb * MB:
            level = LOW
        else:
            level = OK
        self.state = DiskState(level, free, reserve)
        return self.state

    def refresh(self) -> DiskState:
        """check(), and (re)make the reserve while there is room (after start, after space
        came back) in a thread of its own: writing megabytes must never stall the loop that
        keeps the relay board's heartbeat."""
        state = self.check()
        want = state.level == OK and state.reserve_bytes < self.policy.reserve_mb * MB
        if want and (self._writer is None or not self._writer.is_alive()):
            self._writer = threading.Thread(target=self.make_reserve, name="disk-reserve", daemon=True)
            self._writer.start()
        return state

    def _reserve_size(self) -> int:
        try:
            return self.reserve.stat().st_size
        except OSError:
            return 0

    def make_reserve(self) -> bool:
        """Write the reserve file (zeros, fsynced: a sparse file would reserve nothing)."""
        want = int(self.policy.reserve_mb * MB)
        if want <= 0 or self._reserve_size() >= want:
            return True
        tmp = self.reserve.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as handle:
                chunk = b"\0" * min(want, MB)
                written = 0
                while written < want:
                    written += handle.write(chunk[: want - written])
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.reserve)
            return True
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("cannot keep %.0f MB in reserve in %s: %s", self.policy.reserve_mb, self.data_dir, exc)
            return False

    def release_reserve(self) -> bool:
        """Give the reserve back to the filesystem so a closing session can be written."""
        if self._reserve_size() == 0:
            return False
        try:
            self.reserve.unlink()
        except OSError as exc:
            log.error("cannot release the disk reserve %s: %s", self.reserve, exc)
            return False
        log.warning("disk full: released the %.0f MB reserve to close running fills", self.policy.reserve_mb)
        return True


def write_with_reserve(guard: DiskGuard, write: Callable[[], None]) -> None:
    """Run a journal write; if the disk is full, give back the reserve and try once more."""
    try:
        write()
    except Exception as exc:
        if not is_disk_error(exc) or not guard.release_reserve():
            raise
        write()


def describe(state: DiskState) -> str:
    return f"{state.free_bytes / MB:.1f} MB free"


# Installing a vehicle list takes about three times its size at the peak: the chunks as
# they arrive, the assembled file, and the list in force until the switch.
LIST_INSTALL_FACTOR = 3


def room_for(path: Path, need_bytes: int) -> tuple[bool, int]:
    """(enough free space for need_bytes at path, free bytes)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return True, -1  # cannot tell: let the write itself fail clearly
    free = st.f_bavail * st.f_frsize
    return free >= need_bytes, free
