"""The station broker's ACL for the attendants' devices (mosquitto acl_file syntax).

Each device is a broker user (its own password: the device key given at enrolment). It may
publish only requests under its own name and, for scans, payment choices, stops and
reprints, only for its own pumps; it may read only its own replies and its own pumps'
views. Patterns (%u = the user name) cover what every device has; `user` blocks name the
pumps."""

from __future__ import annotations

from agent.attendant import topics
from agent.attendant.config import DEVICE_NAME


def render_acl(station: str, devices: dict[str, tuple[int, ...]]) -> str:
    root = topics.root(station)
    lines = ["# Rendered by agent/attendant/acl.py: the attendants' devices, one user each.",
             f"pattern write {root}/in/%u/shift", f"pattern read {root}/out/%u", ""]
    for device, pumps in sorted(devices.items()):
        if not DEVICE_NAME.fullmatch(device):
            raise ValueError(f"device name {device!r}: lowercase letters, digits and -")
        lines.append(f"user {device}")
        for pump in pumps:
            lines += [f"topic write {root}/in/{device}/{pump}/+", f"topic read {topics.pump_view(station, pump)}"]
        lines.append("")
    return "\n".join(lines)
