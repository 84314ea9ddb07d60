"""The settings a station config may hold, and the checks that are about the file's shape
rather than a single value: an unknown key (`buad`) or section is a typo that would
otherwise be silently ignored, so it is an error that names it and the nearest known one.

A module that adds a setting adds it here too (tests/agent/test_config.py checks the
example config and a full rendered config against this table)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from agent.disk_guard import DiskPolicy
from agent.retention import RetentionPolicy

# section -> known keys; None: a free-form table (key ids -> keys)
KNOWN: dict[str, frozenset[str] | None] = {
    "station": frozenset({"id", "zone", "lang", "data_dir", "key"}),
    "mqtt": frozenset({"host", "port", "username", "password_file"}),
    "trust": frozenset({"root", "keys", "allow_trusted_keys"}),
    "dashboard": frozenset({"manager_keys"}),
    "relay_board": frozenset({"kind", "port", "ports", "baud", "active_high", "relay_gpio", "pulser_gpio",
                              "nozzle_gpio", "estop_gpio"}),
    "scanners": frozenset({"baud", "suffix", "good_read_hex", "bad_read_hex"}),
    "attendant": None,  # checked where it is parsed (agent/attendant/config.py)
    "timeouts": None,  # checked against Timeouts where it is parsed
    "edc": None,  # checked against EdcConfig where it is parsed
    "update": None,  # checked where it is parsed (agent/update_config.py)
    "freeze": frozenset({"grace_h", "after_grace"}),
    "pumps": frozenset({"number", "product", "channel", "scanner", "pulses_per_litre", "nozzles", "line"}),
    "tank_gauge": None,  # checked where it is parsed (agent/tank_config.py)
    "tanks": frozenset({"number", "product", "capacity_l"}),
    "disk": frozenset({"warn_free_mb", "refuse_free_mb", "reserve_mb"}),
    "retention": frozenset({"days", "mask_plates"}),
}

# Channels a pump controller can address: a relay board drives at most 16 fuelling points;
# a DART line has the pump addresses 0x50..0x6F.
MAX_CHANNEL = {"uart": 15, "relay": 15, "dart": 31, "gpio": 0}

# Directories that are never a station's data directory.
SYSTEM_DIRS = ("/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/boot", "/proc", "/sys", "/dev", "/run", "/root")


def _unknown(where: str, names: list[str], known: frozenset[str]) -> str:
    name = names[0]
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
    return f"{where}: unknown setting {name!r}{hint}"


def check_known(data: dict[str, Any]) -> str | None:
    """The first unknown section or key, as one error line, or None."""
    sections = frozenset(KNOWN)
    strange = [name for name in data if name not in sections]
    if strange:
        close = difflib.get_close_matches(strange[0], sorted(sections), n=1)
        hint = f" (did you mean [{close[0]}]?)" if close else f"; known: {', '.join(sorted(sections))}"
        return f"config: unknown section [{strange[0]}]{hint}"
    for section, known in KNOWN.items():
        value = data.get(section)
        if known is None or value is None:
            continue
        tables = value if isinstance(value, list) else [value]
        for index, table in enumerate(tables):
            if not isinstance(table, dict):
                continue  # the section's own parser says what shape it wants
            extra = [k for k in table if k not in known]
            if extra:
                where = f"[[{section}]] #{index + 1}" if isinstance(value, list) else f"[{section}]"
                return _unknown(where, extra, known)
    return None


def check_data_dir(path: Path) -> str | None:
    resolved = Path(str(path)).resolve()
    if str(resolved) in SYSTEM_DIRS or (resolved.exists() and not resolved.is_dir()):
        return f"[station]: data_dir {str(path)!r} must be a directory of its own (e.g. /var/lib/spbu)"
    return None


def _number(table: dict[str, Any], key: str, default: float, low: float, high: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{where}: {key} must be a number from {low:g} to {high:g}")
    return float(value)


def parse_disk(raw: Any) -> DiskPolicy:
    if raw is None:
        return DiskPolicy()
    if not isinstance(raw, dict):
        raise ValueError("[disk]: must be a table")
    base = DiskPolicy()
    policy = DiskPolicy(_number(raw, "warn_free_mb", base.warn_free_mb, 0, 1_000_000, "[disk]"),
                        _number(raw, "refuse_free_mb", base.refuse_free_mb, 0, 1_000_000, "[disk]"),
                        _number(raw, "reserve_mb", base.reserve_mb, 0, 1024, "[disk]"))
    if policy.refuse_free_mb > policy.warn_free_mb:
        raise ValueError("[disk]: refuse_free_mb must not be above warn_free_mb")
    return policy


def parse_retention(raw: Any) -> RetentionPolicy:
    if raw is None:
        return RetentionPolicy()
    if not isinstance(raw, dict):
        raise ValueError("[retention]: must be a table")
    mask = raw.get("mask_plates", True)
    if not isinstance(mask, bool):
        raise ValueError("[retention]: mask_plates must be true or false")
    # 0 days: keep everything (an explicit choice, e.g. a station under audit)
    return RetentionPolicy(_number(raw, "days", RetentionPolicy.days, 0, 3650, "[retention]"), mask)
