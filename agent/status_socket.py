"""`spbu agent status` for a technician at the Pi: the running agent answers on a unix
socket in its data directory (`agent.sock`, mode 0660, group of the service) with one JSON
object and closes. No network, no broker needed: it works with the link down.

The main loop refreshes the snapshot (every few seconds and on start); the socket's thread
only hands out the last one, so it never touches the journal or the devices."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from agent import __version__
from agent.config import StationConfig
from agent.device_watch import DeviceWatch
from agent.disk_guard import DiskGuard
from agent.docstore import DocumentStore
from agent.journal import Journal
from agent.pump_states import PumpRuntime


class StationStatus(Protocol):
    """What `spbu agent status` and the start line read (agent/station.py's public API)."""

    config: StationConfig
    pumps: dict[int, PumpRuntime]
    docs: DocumentStore
    devices: DeviceWatch
    disk: DiskGuard
    journal: Journal

    def status_line(self) -> str: ...
    def pending_close_ids(self) -> list[str]: ...

log = logging.getLogger(__name__)

SOCKET_NAME = "agent.sock"
MAX_PATH = 100  # sun_path holds 108 bytes on Linux


class StatusServer:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SOCKET_NAME
        self._snapshot = b"{}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def update(self, snapshot: dict[str, Any]) -> None:
        data = json.dumps(snapshot, separators=(",", ":"), default=str).encode()
        with self._lock:
            self._snapshot = data

    def start(self) -> None:
        if len(str(self.path)) > MAX_PATH:
            log.warning("status socket path too long (%s): `spbu agent status` is not available", self.path)
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an agent that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            sock.listen(4)
        except OSError as exc:
            sock.close()
            log.warning("status socket %s: %s; `spbu agent status` is not available", self.path, exc)
            return
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="status-socket", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()  # blocks: no wake-ups while nobody asks
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2.0)
                with self._lock:
                    data = self._snapshot
                with contextlib.suppress(OSError):
                    conn.sendall(data + b"\n")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(OSError):
            self.path.unlink()


def query(data_dir: Path, timeout_s: float = 3.0) -> dict[str, Any]:
    """The running agent's status; OSError when no agent answers there."""
    path = data_dir / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer


def render(status: dict[str, Any]) -> list[str]:
    """Lines a technician reads at a glance."""
    lines = [f"station {status.get('station')} (agent {status.get('version')}), up {status.get('uptime_s', 0):.0f} s",
             f"  {status.get('status_line', '')}"]
    for name, device in sorted(status.get("devices", {}).items()):
        mark = "ok" if device.get("connected") else "MISSING"
        lines.append(f"  {mark:8} {name} ({device.get('where')})")
    disk = status.get("disk", {})
    lines.append(f"  disk {disk.get('state')}: {disk.get('free_mb')} MB free, reserve {disk.get('reserve_mb')} MB")
    for tx_id in status.get("pending_closes", []):
        lines.append(f"  NOT JOURNALED yet: {tx_id} (disk full or read-only)")
    return lines


def snapshot(station: StationStatus) -> dict[str, Any]:
    """What the running agent tells `spbu agent status` (built on the main loop's thread)."""
    allowlist = station.docs.allowlist
    return {
        "station": station.config.station_id,
        "version": __version__,
        "uptime_s": round(time.monotonic() - station.devices.started, 1),
        "status_line": station.status_line(),
        "pumps": {str(n): p.state for n, p in station.pumps.items()},
        "devices": station.devices.snapshot(),
        "allowlist": {"version": allowlist.version if allowlist else 0,
                      "expires": allowlist.expires.isoformat() if allowlist else None},
        "policy_version": station.docs.policy.version if station.docs.policy else 0,
        "disk": station.disk.state.as_dict(),
        "pending_closes": station.pending_close_ids(),
    }


def start_line(station: StationStatus) -> str:
    """The INFO line at start: what the agent found."""
    cfg = station.config
    allowlist = station.docs.allowlist
    scanners = ", ".join(f"{p.number}:{p.product}:{p.scanner_port}" for p in cfg.pumps)
    edc = cfg.edc.port if cfg.edc else "none (cash only)"
    listed = f"v{allowlist.version} until {allowlist.expires.date()}" if allowlist else "none yet"
    recovering = sum(1 for p in station.pumps.values() if p.session is not None)
    return (f"station {cfg.station_id} ({cfg.zone}) agent {__version__}: pump controller {cfg.relay_board_kind} "
            f"{cfg.relay_board_port}; pumps {scanners}; EDC {edc}; broker {cfg.broker_host}:{cfg.broker_port}; "
            f"allow-list {listed}; policy v{station.docs.policy.version if station.docs.policy else 0}; "
            f"outbox {station.journal.outbox_depth()}; {recovering} interrupted fills to recover; "
            f"data {cfg.data_dir} ({station.disk.state.free_bytes / 2**20:.0f} MB free, "
            f"disk {station.disk.state.level})")
