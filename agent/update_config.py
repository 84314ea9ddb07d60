"""The `[update]` table of agent.toml: where releases live, the health window, a USB mount.

    [update]
    releases = "/opt/spbu/releases"     # side-by-side releases and the `current` link
    state = "/var/lib/spbu/update"      # switch state, fetched chunks, config backups
    usb_dir = "/media/spbu-release"     # optional: a technician's stick, read like the broker
    health_window_s = 60
    board_trial_ms = 20000              # the relay board's boot guard: confirm within this
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class UpdateConfig:
    releases: Path = Path("/opt/spbu/releases")
    state: Path = Path("/var/lib/spbu/update")
    usb_dir: Path | None = None  # where a technician's stick is mounted (udev automount)
    health_window_s: float = 60.0
    base_site: Path | None = None  # simulation only: see agent/updates/store.build_venv
    config_path: Path | None = None
    journal_path: Path | None = None
    board_trial_ms: int = 20000  # the relay board's boot guard waits this long for CONFIRM


KNOWN = ("releases", "state", "usb_dir", "health_window_s", "base_site", "board_trial_ms")


class UpdateConfigError(ValueError):
    """A bad [update] table (agent/config.py reports it as a ConfigError)."""


def parse_update(raw: Any, base: Path, config_path: Path | None, journal: Path) -> UpdateConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UpdateConfigError("[update]: must be a table")
    for name in raw:
        if name not in KNOWN:
            raise UpdateConfigError(f"[update]: unknown setting {name!r}")
    paths: dict[str, Path | None] = {}
    for name in ("releases", "state", "usb_dir", "base_site"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise UpdateConfigError(f"[update]: {name} must be a path")
        paths[name] = None if value is None else base / value
    window = raw.get("health_window_s", 60.0)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 1 <= window <= 3600:
        raise UpdateConfigError("[update]: health_window_s must be 1..3600 seconds")
    trial_ms = raw.get("board_trial_ms", 20000)
    if isinstance(trial_ms, bool) or not isinstance(trial_ms, int) or not 1000 <= trial_ms <= 600_000:
        raise UpdateConfigError("[update]: board_trial_ms must be 1000..600000")
    return UpdateConfig(paths["releases"] or UpdateConfig.releases, paths["state"] or UpdateConfig.state,
                        paths["usb_dir"], float(window), paths["base_site"], config_path, journal, trial_ms)


def render_update(cfg: UpdateConfig) -> list[str]:
    lines = ["", "[update]", f"releases = {_q(cfg.releases)}", f"state = {_q(cfg.state)}",
             f"health_window_s = {cfg.health_window_s}", f"board_trial_ms = {cfg.board_trial_ms}"]
    if cfg.usb_dir is not None:
        lines.append(f"usb_dir = {_q(cfg.usb_dir)}")
    if cfg.base_site is not None:
        lines.append(f"base_site = {_q(cfg.base_site)}")
    return lines


def _q(path: Path) -> str:
    import json

    return json.dumps(str(path))
