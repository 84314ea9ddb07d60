"""A private mosquitto on a free loopback port, in its own temp directory.

Used by the demo and the tests; never touches a system broker. Restartable on the same
port so tests can take the broker away under a running agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


class BrokerError(RuntimeError):
    pass


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError("mosquitto is not installed; run: sudo apt-get install mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class DashboardListener:
    """A WebSockets listener that serves the dashboard's static files (`http_dir`) and lets
    in only named users, each limited by an ACL: read their station, publish its commands."""

    http_dir: Path
    station: str
    users: dict[str, str]  # user name -> password
    port: int = field(default_factory=free_port)

    def config_lines(self, workdir: Path, host: str) -> str:
        passwords = workdir / "dashboard.passwd"
        passwords.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
        passwords.chmod(0o600)
        # mosquitto_passwd -U hashes the plain-text file in place, as an installer would.
        subprocess.run([find_mosquitto_passwd(), "-U", str(passwords)], check=True, capture_output=True)
        acl = workdir / "dashboard.acl"
        acl.write_text("".join(
            f"user {user}\ntopic read spbu/v1/{self.station}/#\ntopic write hq/v1/cmd/{self.station}\n\n"
            for user in self.users))
        return (f"listener {self.port} {host}\nprotocol websockets\nhttp_dir {self.http_dir}\n"
                f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n")


@dataclass
class AttendantListener:
    """The attendants' phones: MQTT over TLS WebSockets (a camera needs a secure page), one
    broker user per device with the station's ACL. (The page comes from
    agent/page_server.py, which says why not from `http_dir`.)"""

    station: str
    devices: dict[str, tuple[tuple[int, ...], str]]  # device name -> (its pumps, its key)
    certfile: Path
    keyfile: Path
    port: int = field(default_factory=free_port)

    def config_lines(self, workdir: Path, host: str) -> str:
        from agent.attendant.acl import render_acl

        passwords = workdir / "attendant.passwd"
        passwords.write_text("".join(f"{name}:{key}\n" for name, (_, key) in self.devices.items()))
        passwords.chmod(0o600)
        subprocess.run([find_mosquitto_passwd(), "-U", str(passwords)], check=True, capture_output=True)
        acl = workdir / "attendant.acl"
        acl.write_text(render_acl(self.station, {name: pumps for name, (pumps, _) in self.devices.items()}))
        return (f"listener {self.port} {host}\nprotocol websockets\n"
                f"certfile {self.certfile}\nkeyfile {self.keyfile}\n"
                f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n")


def find_mosquitto_passwd() -> str:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError("mosquitto_passwd is not installed; run: sudo apt-get install mosquitto")


class MosquittoBroker:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1", workdir: Path | None = None,
                 dashboard: DashboardListener | None = None, config: str | None = None,
                 attendant: AttendantListener | None = None):
        """config: listeners and their settings instead of the anonymous loopback listener
        (TLS, ACL and bridge tests); port must then be the one the broker is checked on."""
        self.host = host
        self._config = config
        self.port = port or free_port(host)
        self.dashboard = dashboard
        self.attendant = attendant
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="spbu-broker-"))
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        listeners = self._config or (("per_listener_settings true\n" if self.dashboard or self.attendant else "")
                                     + f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n")
        conf.write_text(
            listeners +
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "max_queued_messages 10000\n"
            # Stay the user we are: a credential change would clear the parent-death signal.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            + (self.dashboard.config_lines(self.workdir, self.host) if self.dashboard else "")
            + (self.attendant.config_lines(self.workdir, self.host) if self.attendant else "")
        )
        return conf

    def start(self, timeout_s: float = 10.0) -> MosquittoBroker:
        if self._proc is not None and self._proc.poll() is None:
            return self
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop it in order.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

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
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
