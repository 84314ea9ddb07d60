"""Station configuration (agent/config.py): validation with one clear error per problem, and
render_config / load_config round trips."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import (
    ConfigError,
    PumpConfig,
    StationConfig,
    Timeouts,
    load_config,
    parse_config,
    render_config,
)
from agent.trust.signing import key_id, load_public_key_hex, public_key_hex

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate().public_key()
KID = key_id(KEY)
KEY_HEX = public_key_hex(KEY)
OTHER = Ed25519PrivateKey.generate().public_key()


def valid() -> dict[str, Any]:
    return {
        "station": {"id": "34.401.01", "zone": "WITA", "lang": "en", "data_dir": "data"},
        "mqtt": {"host": "10.0.0.2", "port": 1884},
        "trust": {"keys": {KID: KEY_HEX}},
        "relay_board": {"port": "/dev/spbu-relay", "baud": 57600},
        "timeouts": {"no_flow_s": 45, "max_fill_s": 300.5},
        "pumps": [
            {"number": 1, "product": "pertalite", "channel": 0, "scanner": "/dev/spbu-scanner-1"},
            {"number": 2, "product": "solar", "channel": 3, "scanner": "/dev/spbu-scanner-2",
             "pulses_per_litre": 250},
        ],
    }


def test_parse_valid_config(tmp_path: Path) -> None:
    cfg = parse_config(valid(), tmp_path)
    assert cfg.station_id == "34.401.01"
    assert (cfg.zone, cfg.lang) == ("WITA", "en")
    assert cfg.data_dir == tmp_path / "data"
    assert (cfg.broker_host, cfg.broker_port) == ("10.0.0.2", 1884)
    assert cfg.trusted_keys == {KID: KEY_HEX}
    assert (cfg.relay_board_port, cfg.relay_board_baud) == ("/dev/spbu-relay", 57600)
    assert cfg.pumps == (
        PumpConfig(1, "pertalite", 0, "/dev/spbu-scanner-1", 100),
        PumpConfig(2, "solar", 3, "/dev/spbu-scanner-2", 250),
    )
    assert cfg.pump(2).channel == 3
    with pytest.raises(KeyError):
        cfg.pump(9)
    assert cfg.timeouts == Timeouts(no_flow_s=45.0, max_fill_s=300.5)
    assert isinstance(cfg.timeouts.no_flow_s, float)


def test_parse_defaults(tmp_path: Path) -> None:
    data = valid()
    del data["station"]["zone"], data["station"]["lang"], data["mqtt"]["host"]
    del data["relay_board"]["baud"], data["timeouts"]
    cfg = parse_config(data, tmp_path)
    assert (cfg.zone, cfg.lang, cfg.broker_host, cfg.relay_board_baud) == ("WIB", "id", "127.0.0.1", 115200)
    assert cfg.timeouts == Timeouts()
    assert cfg.scanner_baud == 9600


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    data = valid()
    data["station"]["data_dir"] = "/var/lib/spbu"
    assert parse_config(data, tmp_path).data_dir == Path("/var/lib/spbu")


def test_two_trusted_keys(tmp_path: Path) -> None:
    data = valid()
    data["trust"]["keys"][key_id(OTHER)] = public_key_hex(OTHER)
    assert len(parse_config(data, tmp_path).trusted_keys) == 2


Mutation = Callable[[dict[str, Any]], None]


def setter(*path_then_value: Any) -> Mutation:
    """setter("pumps", 0, "product", "premium"): set data["pumps"][0]["product"] = "premium"."""
    *path, value = path_then_value

    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


def deleter(*path: str | int) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]
    return mutate


def duplicate_pump_numbers(data: dict[str, Any]) -> None:
    data["pumps"][1]["number"] = 1


def duplicate_channels(data: dict[str, Any]) -> None:
    data["pumps"][1]["channel"] = 0


def mismatched_key_id(data: dict[str, Any]) -> None:
    data["trust"]["keys"] = {KID: public_key_hex(OTHER)}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(setter("station", "id", "34-401-01"),
                     r"\[station\]: id '34-401-01' must look like 34\.401\.01", id="station-id-dashes"),
        pytest.param(setter("station", "id", "3440101"), "must look like 34.401.01", id="station-id-digits"),
        pytest.param(setter("station", "id", "34.401.011"), "must look like", id="station-id-long"),
        pytest.param(setter("station", "id", " 34.401.01"), "must look like", id="station-id-space"),
        pytest.param(setter("station", "id", 3440101), r"\[station\]: 'id' must be str", id="station-id-int"),
        pytest.param(deleter("station", "id"), r"\[station\]: missing 'id'", id="station-id-missing"),
        pytest.param(setter("station", "id", "34.401.01\n"), "must look like", id="station-id-newline"),
        pytest.param(setter("station", "id", "٣٤.٤٠١.٠١"), "must look like", id="station-id-arabic-digits"),
        pytest.param(setter("station", "zone", "UTC"), r"\[station\]: zone must be one of WIB, WITA, WIT",
                     id="zone-unknown"),
        pytest.param(setter("station", "zone", "wib"), "zone must be one of", id="zone-lowercase"),
        pytest.param(setter("station", "zone", ["WIB"]), "zone.*must be", id="zone-list"),
        pytest.param(setter("station", "lang", "fr"), r"\[station\]: lang must be one of id, en", id="lang"),
        pytest.param(deleter("station", "data_dir"), r"\[station\]: missing 'data_dir'",
                     id="data-dir-missing"),
        pytest.param(setter("mqtt", "port", 0), r"\[mqtt\]: port out of range", id="port-zero"),
        pytest.param(setter("mqtt", "port", 65536), "port out of range", id="port-high"),
        pytest.param(setter("mqtt", "port", "1883"), r"\[mqtt\]: 'port' must be int", id="port-string"),
        pytest.param(setter("mqtt", "port", True), "'port' must be int", id="port-bool"),
        pytest.param(setter("trust", "keys", KID, "zz" * 32),
                     rf"\[trust\]: key {KID}: public key is not hex", id="key-not-hex"),
        pytest.param(setter("trust", "keys", KID, "ab" * 16),
                     rf"\[trust\]: key {KID}: public key must be 32 bytes", id="key-short"),
        pytest.param(mismatched_key_id, rf"\[trust\]: key id {KID} does not match its key",
                     id="key-id-mismatch"),
        pytest.param(setter("trust", "keys", {}), r"\[trust\]: at least one signing key is needed",
                     id="no-keys"),
        pytest.param(setter("trust", "keys", KEY_HEX), r"\[trust\]: 'keys' must be dict", id="keys-string"),
        pytest.param(setter("pumps", 0, "product", "premium"), r"\[\[pumps\]\] #1: unknown product 'premium'",
                     id="unknown-product"),
        pytest.param(setter("pumps", 1, "product", "Solar"), r"\[\[pumps\]\] #2: unknown product 'Solar'",
                     id="product-case"),
        pytest.param(duplicate_pump_numbers, r"\[\[pumps\]\]: numbers and channels must be unique",
                     id="duplicate-pump-numbers"),
        pytest.param(duplicate_channels, "numbers and channels must be unique", id="duplicate-channels"),
        pytest.param(setter("pumps", []), r"config: at least one \[\[pumps\]\] entry is needed",
                     id="no-pumps"),
        pytest.param(setter("pumps", 0, "pump one"), r"\[\[pumps\]\] #1: must be a table",
                     id="pump-not-table"),
        pytest.param(deleter("pumps", 1, "scanner"), r"\[\[pumps\]\] #2: missing 'scanner'",
                     id="pump-no-scanner"),
        pytest.param(setter("pumps", 0, "channel", "0"), r"\[\[pumps\]\] #1: 'channel' must be int",
                     id="pump-channel-string"),
        pytest.param(deleter("relay_board", "port"), r"\[relay_board\]: missing 'port'", id="board-port"),
        pytest.param(setter("relay_board", "baud", "fast"), "baud", id="board-baud-string"),
        pytest.param(setter("pumps", 0, "pulses_per_litre", "many"), "pulses_per_litre",
                     id="pulses-string"),
        pytest.param(setter("timeouts", "no_flow_s", "a minute"), "no_flow_s", id="timeout-string"),
        pytest.param(setter("pumps", 0, "pulses_per_litre", 0), "pulses_per_litre", id="pulses-zero"),
        *[
            pytest.param(deleter(section), rf"config: missing '{section}'", id=f"missing-{section}")
            for section in ("station", "mqtt", "trust", "relay_board", "pumps")
        ],
        pytest.param(setter("station", "34.401.01"), r"config: 'station' must be dict",
                     id="station-not-table"),
        pytest.param(setter("pumps", {"number": 1}), r"config: 'pumps' must be list", id="pumps-not-array"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, mutate: Mutation, message: str) -> None:
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_load_config_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text('[station]\nid = "34.401.01\n')
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path)


def test_load_config_resolves_data_dir_beside_the_file(tmp_path: Path) -> None:
    cfg = parse_config(valid(), Path("/elsewhere"))
    text = render_config(cfg).replace('data_dir = "/elsewhere/data"', 'data_dir = "state"')
    path = tmp_path / "etc" / "station.toml"
    path.parent.mkdir()
    path.write_text(text)
    assert load_config(path).data_dir == tmp_path / "etc" / "state"


def test_render_then_load_round_trips(tmp_path: Path) -> None:
    cfg = parse_config(valid(), tmp_path)
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    loaded = load_config(path)
    assert loaded == cfg


def test_round_trip_of_a_config_built_in_code(tmp_path: Path) -> None:
    """As the demo builds it: integer timeouts, several pumps, default language."""
    cfg = StationConfig(
        station_id="91.123.45", zone="WIT", data_dir=tmp_path / "station", broker_host="127.0.0.1",
        broker_port=18830, trusted_keys={KID: KEY_HEX, key_id(OTHER): public_key_hex(OTHER)},
        relay_board_port="/dev/pts/7",
        pumps=tuple(PumpConfig(n, "solar" if n % 2 else "pertalite", n - 1, f"/dev/pts/{10 + n}")
                    for n in range(1, 5)),
        timeouts=Timeouts(scan_to_nozzle_s=30, no_flow_s=20, duplicate_scan_s=0.25),
    )
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    assert load_config(path) == cfg


def test_round_trip_keeps_scanner_baud(tmp_path: Path) -> None:
    cfg = StationConfig(
        station_id="34.401.01", zone="WIB", data_dir=tmp_path, broker_host="127.0.0.1", broker_port=1883,
        trusted_keys={KID: KEY_HEX}, relay_board_port="/dev/r", pumps=(PumpConfig(1, "solar", 0, "/dev/s"),),
        scanner_baud=115200,
    )
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    assert load_config(path).scanner_baud == 115200


@pytest.mark.parametrize("name", ["back\\bslash", 'double "quote"'], ids=["backslash", "quote"])
def test_round_trip_escapes_strings(tmp_path: Path, name: str) -> None:
    cfg = StationConfig(
        station_id="34.401.01", zone="WIB", data_dir=tmp_path / name, broker_host="127.0.0.1",
        broker_port=1883, trusted_keys={KID: KEY_HEX}, relay_board_port="/dev/r",
        pumps=(PumpConfig(1, "solar", 0, "/dev/s"),),
    )
    path = tmp_path / "station.toml"
    path.write_text(render_config(cfg))
    assert load_config(path) == cfg


def test_example_config_in_deploy_is_valid() -> None:
    cfg = load_config(ROOT / "deploy" / "agent.example.toml")
    assert cfg.station_id == "34.401.01"
    assert [p.number for p in cfg.pumps] == [1, 2]
    assert all(kid == key_id(load_public_key_hex(hexkey)) for kid, hexkey in cfg.trusted_keys.items())


def test_unknown_timeout_setting_is_rejected() -> None:
    data = valid()
    data["timeouts"] = {"no_flow_seconds": 30}
    with pytest.raises(ConfigError, match="unknown setting 'no_flow_seconds'"):
        parse_config(data, Path("/etc/spbu"))
