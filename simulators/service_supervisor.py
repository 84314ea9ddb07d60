"""What systemd does for spbu-agent.service, for a simulated station: before every start
the release switch's `boot` (ExecStartPre), then the agent from `current` (ExecStart) with
a NOTIFY_SOCKET and WATCHDOG_USEC; a child that stops pinging is killed (WatchdogSec), a
child that exits is started again (Restart=always, RestartSec).

So the update path runs as it does on a Pi: the agent asks for a switch and exits; the
switch happens before the next start; a release whose agent dies is rolled back there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SWITCH_SCRIPT = Path(__file__).resolve().parents[1] / "agent" / "updates" / "switch.py"


@dataclass
class Start:
    release: str
    started: float
    exit_code: int | None = None
    killed_by_watchdog: bool = False
    ended: float = 0.0


class ServiceSupervisor:
    def __init__(self, releases: Path, state: Path, config: Path, journal: Path, log: Path,
                 watchdog_s: float = 10.0, restart_s: float = 0.5) -> None:
        self.releases, self.state, self.config, self.journal, self.log = releases, state, config, journal, log
        self.watchdog_s = watchdog_s
        self.restart_s = restart_s
        self.starts: list[Start] = []
        self.child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._sockdir = tempfile.mkdtemp(prefix="spbu-notify-")
        self._sock_path = os.path.join(self._sockdir, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._sock_path)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="service-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        self._thread.join(timeout=20)
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._sock_path)
            os.rmdir(self._sockdir)

    def _boot(self) -> None:
        with open(self.log, "ab") as handle:
            subprocess.run([sys.executable, str(SWITCH_SCRIPT), "boot", "--releases", str(self.releases),
                            "--state", str(self.state), "--config", str(self.config), "--journal",
                            str(self.journal)], stdout=handle, stderr=subprocess.STDOUT, timeout=60, check=False)

    def _spawn(self) -> subprocess.Popen[bytes]:
        release = os.readlink(self.releases / "current")
        python = self.releases / "current" / "venv" / "bin" / "python"
        env = dict(os.environ, NOTIFY_SOCKET=self._sock_path, WATCHDOG_USEC=str(int(self.watchdog_s * 1e6)))
        env.pop("PYTHONPATH", None)
        env.pop("SPBU_KILLPOINT", None)
        self.starts.append(Start(release, time.monotonic()))
        with open(self.log, "ab") as handle:
            handle.write(f"--- supervisor: starting release {release}\n".encode())
            # cwd outside any checkout: the release's own agent package, nothing else
            return subprocess.Popen([str(python), "-m", "agent", "-v", "agent", "run", "--config", str(self.config)],
                                    stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=self.state.parent)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._boot()
            if self._stop.is_set():
                return
            self.child = self._spawn()
            last_ping = time.monotonic()
            while self.child.poll() is None and not self._stop.is_set():
                try:
                    message = self._sock.recv(4096).decode(errors="replace")
                    if "WATCHDOG=1" in message or "READY=1" in message:
                        last_ping = time.monotonic()
                except TimeoutError:
                    pass
                if time.monotonic() - last_ping > self.watchdog_s:
                    self.starts[-1].killed_by_watchdog = True
                    self.child.send_signal(signal.SIGABRT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.child.wait(5)
                    if self.child.poll() is None:
                        self.child.kill()
            if self._stop.is_set():
                return
            self.starts[-1].exit_code = self.child.wait()
            self.starts[-1].ended = time.monotonic()
            self._stop.wait(self.restart_s)
