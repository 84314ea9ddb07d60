"""A private PostgreSQL server in a temporary directory, the way simulators/broker.py runs
a private mosquitto: Debian's binaries (initdb, postgres), a free loopback port, the unix
socket inside the temp directory, and it stops with its parent.

PostgreSQL refuses to run as root. When we are root (CI runs `make test` as root), the
server and initdb run as the unprivileged `postgres` user that Debian's package creates
(or `nobody`), in a directory made for and owned by that user.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from simulators.broker import free_port

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
SUPERUSER = "spbu"


class PostgresError(RuntimeError):
    pass


def find_pg_bin() -> Path:
    for candidate in PG_BIN_DIRS:
        if os.access(Path(candidate) / "initdb", os.X_OK):
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresError("PostgreSQL is not installed; run: sudo apt-get install postgresql")


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None to stay ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def _child_setup(account: pwd.struct_passwd | None, death_signal: int | None) -> Callable[[], None]:
    def setup() -> None:
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
        if death_signal is not None:
            # After the credential change, which would clear it: die when the parent dies.
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(1, death_signal)  # PR_SET_PDEATHSIG
    return setup


class PostgresServer:
    """`durable=False` turns fsync off: tests check logic, not the disk; benchmarks keep it on."""

    def __init__(self, durable: bool = True, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or free_port()
        self.durable = durable
        self.account = _run_as()
        self.workdir = Path(tempfile.mkdtemp(prefix="spbu-pg-"))
        self.datadir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        if self.account is not None:
            os.chown(self.workdir, self.account.pw_uid, self.account.pw_gid)
        self._proc: subprocess.Popen[bytes] | None = None

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.workdir} port={self.port} user={SUPERUSER} dbname={dbname}"

    def _initdb(self) -> None:
        result = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, preexec_fn=_child_setup(self.account, None), cwd=self.workdir, check=False)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.decode(errors='replace')[-400:]}")

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        if self._proc is not None and self._proc.poll() is None:
            return self
        if not self.datadir.exists():
            self._initdb()
        for _attempt in range(5):
            try:
                return self._start(timeout_s)
            except PostgresError as exc:
                # The free port was taken between choosing it and binding it: choose again.
                if "already in use" not in str(exc):
                    raise
                self.port = free_port()
        raise PostgresError(f"postgres found no free port: {self.log_tail()}")

    def _start(self, timeout_s: float) -> PostgresServer:
        settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.workdir),
                    "fsync": "on" if self.durable else "off", "max_connections": "200",
                    "shared_buffers": "128MB", "logging_collector": "off"}
        args = [str(self.bin / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            self._proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.workdir, start_new_session=True,
                                          preexec_fn=_child_setup(self.account, signal.SIGINT))
        finally:
            log.close()
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PostgresError(f"postgres exited: {self.log_tail()}")
            with contextlib.suppress(psycopg.OperationalError), psycopg.connect(self.dsn(), connect_timeout=2):
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not accept connections on port {self.port}: {self.log_tail()}")

    def create_database(self, name: str) -> str:
        """A fresh database (a test's own); returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, checkpoints
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
