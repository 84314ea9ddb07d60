"""Enrolled attendant devices on the station broker: a name, its pumps and its key (the
broker password, stored hashed by mosquitto_passwd). The list is kept beside the broker's
configuration (attendant-devices.json) so the ACL can be rendered again at any time."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from agent.attendant.acl import render_acl
from agent.attendant.config import DEVICE_NAME

DEVICES_FILE = "attendant-devices.json"


class DeviceError(ValueError):
    pass


def load_devices(etc: Path) -> dict[str, tuple[int, ...]]:
    path = etc / DEVICES_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(name): tuple(int(p) for p in pumps) for name, pumps in raw.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise DeviceError(f"{path}: not a device list ({exc})") from exc


def enrol_device(etc: Path, station: str, name: str, pumps: tuple[int, ...], passwd_tool: str) -> str:
    """Adds (or re-keys) a device; returns its new key. The broker reads the files on SIGHUP."""
    if not DEVICE_NAME.fullmatch(name):
        raise DeviceError(f"device name {name!r}: lowercase letters, digits and -, at most 32")
    if not pumps or len(pumps) > 4 or any(p <= 0 for p in pumps):
        raise DeviceError("a device serves 1 to 4 pumps")
    devices = load_devices(etc)
    devices[name] = tuple(sorted(set(pumps)))
    key = secrets.token_urlsafe(18)
    passwd = etc / "attendant.passwd"
    if not passwd.exists():
        passwd.touch(mode=0o600)
    result = subprocess.run([passwd_tool, "-b", str(passwd), name, key], capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        raise DeviceError(f"mosquitto_passwd failed: {result.stderr.strip() or result.stdout.strip()}")
    (etc / DEVICES_FILE).write_text(json.dumps({k: list(v) for k, v in sorted(devices.items())}, indent=1) + "\n")
    (etc / "station-attendant.acl").write_text(render_acl(station, devices))
    return key
