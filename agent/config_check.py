"""`spbu agent check-config`: what a technician needs to hear before starting the agent,
beyond "the file parses": placeholder keys, devices that are not there, optional device
kinds whose extra is not installed, a data directory the service cannot write.

`load_config` already refuses what can never work (unknown keys and sections, values out of
range, a data_dir that is a file or a system directory). Here come the checks that depend
on the machine; the unit's ExecStartPre runs them with devices skipped, so an unplugged
scanner never keeps a station from starting (the agent warns about it itself)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.config import StationConfig
from hal.scanner_select import missing_extra

# The example config's key (deploy/agent.example.toml): public, so never to be trusted.
EXAMPLE_KEY_IDS = frozenset({"56475aa75463474c"})


@dataclass(frozen=True)
class Finding:
    item: str
    ok: bool
    detail: str
    blocking: bool = True  # False: reported, but the agent can start (it will say the same)


def _device(item: str, path: str) -> Finding:
    present = os.path.exists(path)
    return Finding(item, present, f"{path} present" if present else
                   f"{path} missing: plug it in, check deploy/udev/99-spbu.rules")


def device_findings(config: StationConfig) -> list[Finding]:
    found = []
    if config.relay_board_kind != "gpio":
        found.append(_device("pump controller", config.relay_board_port))
    for pump in config.pumps:
        setting = pump.scanner_port
        extra = missing_extra(setting)
        if extra:
            found.append(Finding(f"scanner pump {pump.number}", False, extra))
            continue
        path = setting.split(":", 1)[1] if setting.startswith(("hid:", "camera:")) else setting
        if setting != "camera:picamera":
            found.append(_device(f"scanner pump {pump.number}", path))
    if config.edc is not None:
        found.append(_device("EDC terminal", config.edc.port))
    return found


def _data_dir(config: StationConfig) -> Finding:
    path: Path = config.data_dir
    probe = path if path.exists() else path.parent
    writable = probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)
    return Finding("data directory", writable, f"{path} writable by this user" if writable else
                   f"{path} is not writable by this user (uid {os.getuid()}): install.sh makes it the service's")


def check(config: StationConfig, devices: bool = True) -> list[Finding]:
    placeholders = sorted(EXAMPLE_KEY_IDS & set(config.trusted_keys))
    found = [Finding("trust", not placeholders,
                     f"the example config's public key {', '.join(placeholders)} is trusted: anyone can sign "
                     "for it; run `spbu provision` with headquarters' root of trust" if placeholders else
                     f"{len(config.trusted_keys)} keys" + (f", root {config.trust_root}" if config.trust_root else "")),
             _data_dir(config)]
    if not config.trusted_keys and config.trust_root is None:
        found.append(Finding("trust", False, "no signing key and no root of trust"))
    for finding in device_findings(config):
        found.append(finding if devices else Finding(finding.item, finding.ok, finding.detail, blocking=False))
    return found
