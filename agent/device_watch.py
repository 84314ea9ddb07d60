"""The agent speaks up about its devices and its broker: a WARNING once when one is missing
(never came up within a grace period after start, or went away) and an INFO when it comes
back, instead of silence or a line per retry. Drivers report only transitions; a device
that is absent from the start reports nothing at all, hence the grace timer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("agent.devices")

GRACE_S = 5.0  # time a device gets to answer after start before it is called missing


@dataclass
class Device:
    name: str
    where: str
    connected: bool | None = None  # None: not heard of since start
    warned: bool = False
    changes: int = 0


class DeviceWatch:
    def __init__(self, started_mono: float, grace_s: float = GRACE_S) -> None:
        self.started = started_mono
        self.grace_s = grace_s
        self.devices: dict[str, Device] = {}

    def add(self, name: str, where: str) -> None:
        self.devices[name] = Device(name, where)

    def seen(self, name: str, connected: bool) -> None:
        device = self.devices.get(name)
        if device is None or device.connected == connected:
            return
        device.connected = connected
        device.changes += 1
        if connected:
            if device.warned:
                log.info("%s (%s) is back", device.name, device.where)
            else:
                log.info("%s (%s) connected", device.name, device.where)
            device.warned = False
        elif not device.warned:
            device.warned = True
            log.warning("%s (%s) lost; retrying", device.name, device.where)

    def tick(self, now_mono: float) -> None:
        if now_mono - self.started < self.grace_s:
            return
        for device in self.devices.values():
            if device.connected is None and not device.warned:
                device.warned = True
                log.warning("%s (%s) not found or not answering; retrying", device.name, device.where)

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {d.name: {"where": d.where, "connected": bool(d.connected), "changes": d.changes}
                for d in self.devices.values()}
