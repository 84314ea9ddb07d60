"""Forecourt configuration: multi-grade DART pumps, several lines (islands), one EDC per
island, the tank gauge; parsed, rendered and re-read unchanged; mistakes are one clear
error each."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load_config, parse_config, render_config
from tests.agent.test_config import valid


def forecourt() -> dict[str, Any]:
    data = valid()
    data["relay_board"] = {"kind": "dart", "ports": ["/dev/spbu-dart", "/dev/spbu-dart-2"], "baud": 9600}
    data["pumps"] = [
        {"number": n, "nozzles": ["pertalite", "solar"], "channel": (n - 1) % 2, "line": (n - 1) // 2,
         "scanner": f"/dev/spbu-scanner-{n}"} for n in range(1, 5)]
    data["edc"] = [{"port": "/dev/spbu-edc", "pumps": [1, 2]}, {"port": "/dev/spbu-edc-2", "pumps": [3, 4]}]
    data["tank_gauge"] = {"port": "/dev/spbu-atg", "shift_h": 8, "tolerance_l": 40}
    data["tanks"] = [{"number": 1, "product": "pertalite", "capacity_l": 30000},
                     {"number": 2, "product": "solar", "capacity_l": 20000}]
    return data


def test_forecourt_parses_and_round_trips(tmp_path: Path) -> None:
    cfg = parse_config(forecourt(), tmp_path)
    assert cfg.relay_board_port == "/dev/spbu-dart" and cfg.relay_board_lines == ("/dev/spbu-dart-2",)
    assert [p.key for p in cfg.pumps] == [0, 1, 256, 257]
    assert cfg.pumps[0].product == "pertalite" and cfg.pumps[0].nozzle_products == ("pertalite", "solar")
    assert cfg.edc is not None and cfg.edc.pumps == (1, 2) and cfg.more_edcs[0].pumps == (3, 4)
    assert cfg.tank_gauge is not None and cfg.tank_gauge.shift_s == 8 * 3600 and len(cfg.tank_gauge.tanks) == 2
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    assert load_config(path) == cfg


def mutate(path: str, value: Any) -> Any:
    def apply(data: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = data
        for part in head:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return apply


@pytest.mark.parametrize("change, message", [
    (mutate("pumps.0.nozzles", ["pertalite", "premium"]), "unknown product 'premium' in nozzles"),
    (mutate("pumps.0.nozzles", ["solar"] * 5), "at most 4 nozzles"),
    (mutate("pumps.3.line", 2), "line 2 has no port"),
    (mutate("pumps.3.channel", 0), "channels must be unique"),
    (mutate("relay_board.ports", []), "ports must be a list"),
    (mutate("edc.1.pumps", [2, 3]), "each pump once"),
    (mutate("edc.1.pumps", KeyError), "each names its island's pumps"),
    (mutate("tanks", []), "at least one"),
    (mutate("tanks.1.product", "avtur"), "product must be one of"),
    (mutate("tank_gauge.tolerance_pct", 200), "tolerance_pct must be"),
    (mutate("tank_gauge.colour", "red"), "unknown setting 'colour'"),
])
def test_forecourt_mistakes_are_one_clear_error(tmp_path: Path, change: Any, message: str) -> None:
    data = copy.deepcopy(forecourt())
    change(data)
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)


def test_several_grades_need_a_dart_line(tmp_path: Path) -> None:
    data = valid()
    data["pumps"][0]["nozzles"] = ["pertalite", "solar"]
    with pytest.raises(ConfigError, match="need \\[relay_board\\] kind dart"):
        parse_config(data, tmp_path)
