"""Station configuration (TOML), validated on load: a bad file is one clear error, not a crash."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import config_keys
from agent.allowlist.freeze import AFTER_GRACE, FreezePolicy
from agent.attendant.config import AttendantConfig, AttendantConfigError, parse_attendant, parse_beep
from agent.disk_guard import DiskPolicy
from agent.domain import PRODUCTS, ZONES
from agent.messages import LANGUAGES
from agent.retention import RetentionPolicy
from agent.tank_config import TankGaugeConfig, parse_tanks, render_tanks
from agent.trust.root import TrustError, load_root
from agent.trust.signing import SignatureError, key_id, load_public_key_hex
from agent.update_config import UpdateConfig, UpdateConfigError, parse_update, render_update

STATION_ID = re.compile(r"[0-9]{2}\.[0-9]{3}\.[0-9]{2}")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class PumpConfig:
    number: int
    product: str
    channel: int  # relay-board channel wired to this fuelling point
    scanner_port: str
    pulses_per_litre: int = 100
    # A multi-grade dispenser (DART): the product of each logical nozzle 1..4, in order.
    # Empty: one nozzle, `product`.
    grades: tuple[str, ...] = ()
    line: int = 0  # which relay board or DART line (index into [relay_board] ports)

    @property
    def nozzle_products(self) -> tuple[str, ...]:
        return self.grades or (self.product,)

    @property
    def key(self) -> int:
        """Station-wide address of this fuelling point: line * 256 + channel (hal/board_group.py)."""
        return self.line * 256 + self.channel


@dataclass(frozen=True)
class Timeouts:
    scan_to_nozzle_s: float = 120.0
    no_flow_s: float = 60.0
    max_fill_s: float = 600.0
    stop_confirm_s: float = 10.0
    duplicate_scan_s: float = 3.0


@dataclass(frozen=True)
class EdcConfig:
    """The bank's EDC card terminal on its ECR serial line. Without one: cash only."""

    port: str
    baud: int = 9600
    ack_timeout_s: float = 2.0
    max_retries: int = 3
    response_timeout_s: float = 120.0  # the customer types a PIN
    # how scanner reads are paid when the attendant picked nothing, cycled in order:
    # "cash", "card", "card_prepay:50000", "qris" ...
    scan_payments: tuple[str, ...] = ()
    pumps: tuple[int, ...] = ()  # the island's pumps this terminal pays for; () = every pump


@dataclass(frozen=True)
class StationConfig:
    station_id: str
    zone: str
    data_dir: Path
    broker_host: str
    broker_port: int
    trusted_keys: dict[str, str]  # key id -> Ed25519 public key, hex
    relay_board_port: str
    pumps: tuple[PumpConfig, ...]
    lang: str = "id"
    relay_board_baud: int = 115200
    scanner_baud: int = 9600
    scanner_suffix: str = "any"  # the scanners' line end: any (CR, LF or CR LF), cr, lf, crlf
    # kind "gpio": one pump on the Pi's own header (relay, pulser, nozzle, E-stop or None)
    relay_board_kind: str = "uart"
    relay_gpio: tuple[int, int, int, int | None] | None = None
    relay_active_high: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    edc: EdcConfig | None = None
    # The station manager's dashboard keys (agent/trust/manager_keys.py): key id -> public key, hex.
    # They may sign only the manager's commands (lock, unlock, acknowledge, request state).
    manager_keys: dict[str, str] = field(default_factory=dict)
    trust_root: Path | None = None  # root.json (agent/trust/root.py); when set, trusted_keys may be empty
    freeze: FreezePolicy = field(default_factory=FreezePolicy)
    # Security (docs/operations.md, threat model): the station's EC key signs transaction
    # records; the agent logs in to its broker; [trust.keys] without a root only if allowed.
    station_key: Path | None = None
    broker_user: str = ""
    broker_password_file: Path | None = None
    allow_trusted_keys: bool = False
    update: UpdateConfig | None = None  # [update]: fleet updates (agent/updates/updater.py)
    disk: DiskPolicy = field(default_factory=DiskPolicy)  # free-space alarms and reserve (agent/disk_guard.py)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)  # agent/retention.py
    tank_gauge: TankGaugeConfig | None = None  # agent/tank_config.py: the tanks and their gauge
    relay_board_lines: tuple[str, ...] = ()  # ports of lines 1.. (line 0 is relay_board_port)
    more_edcs: tuple[EdcConfig, ...] = ()  # one EDC terminal per island: the islands after the first
    attendant: AttendantConfig | None = None  # the attendants' phones (agent/attendant/)
    scanner_beep: tuple[bytes, bytes] = (b"", b"")  # good-read, bad-read commands sent to serial scanners

    def pump(self, number: int) -> PumpConfig:
        for pump in self.pumps:
            if pump.number == number:
                return pump
        raise KeyError(number)


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    if key not in table:
        if default is not None:
            return default
        raise ConfigError(f"{where}: missing {key!r}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: {key!r} must be {kind.__name__}")
    return value


SCANNER_SUFFIXES = {"any": b"", "cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}


def _scanner_suffix(table: Any) -> str:
    suffix = _get(table if isinstance(table, dict) else {}, "suffix", str, "[scanners]", "any")
    if suffix not in SCANNER_SUFFIXES:
        raise ConfigError(f"[scanners]: suffix must be one of {', '.join(SCANNER_SUFFIXES)}")
    return str(suffix)


def parse_config(data: dict[str, Any], base: Path, config_path: Path | None = None) -> StationConfig:
    unknown = config_keys.check_known(data)
    if unknown:
        raise ConfigError(unknown)
    station = _get(data, "station", dict, "config")
    station_id, zone, lang, data_dir = _station(station, base)

    mqtt = _get(data, "mqtt", dict, "config")
    port = _get(mqtt, "port", int, "[mqtt]")
    if not 0 < port < 65536:
        raise ConfigError("[mqtt]: port out of range")

    trust = _get(data, "trust", dict, "config")
    trust_root = _trust_root(trust, base)
    keys = _get(trust, "keys", dict, "[trust]", {}) if trust_root else _get(trust, "keys", dict, "[trust]")
    _check_keys(keys, "[trust]")
    dashboard = _get(data, "dashboard", dict, "config", {}) or {}
    manager_keys = _get(dashboard, "manager_keys", dict, "[dashboard]", {}) or {}
    _check_keys(manager_keys, "[dashboard] manager_keys")
    if not keys and trust_root is None:
        raise ConfigError("[trust]: at least one signing key is needed")

    board = _get(data, "relay_board", dict, "config")
    kind = _get(board, "kind", str, "[relay_board]", "uart")
    kind = "uart" if kind == "relay" else kind  # the command line's name for a relay board
    if kind not in ("uart", "gpio", "dart"):
        raise ConfigError("[relay_board]: kind must be relay (or uart), gpio or dart")
    gpio = _gpio_pins(board) if kind == "gpio" else None
    pumps, ports = _pumps(data, board, kind)
    timeouts = _timeouts(data)
    edcs = _parse_edcs(data.get("edc"), {p.number for p in pumps})
    edc = edcs[0] if edcs else None
    return StationConfig(
        station_id=station_id,
        zone=zone,
        data_dir=data_dir,
        broker_host=_get(mqtt, "host", str, "[mqtt]", "127.0.0.1"),
        broker_port=port,
        trusted_keys={str(k): str(v) for k, v in keys.items()},
        relay_board_port=ports[0],
        relay_board_lines=ports[1:],
        more_edcs=tuple(edcs[1:]),
        relay_board_kind=kind,
        relay_gpio=gpio,
        relay_active_high=_get(board, "active_high", bool, "[relay_board]", True),
        relay_board_baud=_get(board, "baud", int, "[relay_board]", 115200),
        scanner_baud=_get(data.get("scanners", {}) if isinstance(data.get("scanners"), dict) else {},
                          "baud", int, "[scanners]", 9600),
        scanner_suffix=_scanner_suffix(data.get("scanners")),
        pumps=tuple(pumps),
        lang=lang,
        timeouts=timeouts,
        edc=edc,
        manager_keys={str(k): str(v) for k, v in manager_keys.items()},
        trust_root=trust_root,
        freeze=_freeze(data),
        station_key=base / str(_get(station, "key", str, "[station]")) if "key" in station else None,
        broker_user=_get(mqtt, "username", str, "[mqtt]", ""),
        broker_password_file=(base / str(_get(mqtt, "password_file", str, "[mqtt]"))
                              if "password_file" in mqtt else None),
        allow_trusted_keys=_get(trust, "allow_trusted_keys", bool, "[trust]", False),
        update=_update_table(data.get("update"), base, config_path, data_dir / "journal.sqlite"),
        disk=_policy(config_keys.parse_disk, data.get("disk")),
        retention=_policy(config_keys.parse_retention, data.get("retention")),
        tank_gauge=_policy(parse_tanks, data),
        **_attendant(data, {p.number for p in pumps}),
    )


def _station(station: dict[str, Any], base: Path) -> tuple[str, str, str, Path]:
    """[station]: id, zone, language and data directory, each checked."""
    station_id = _get(station, "id", str, "[station]")
    if not STATION_ID.fullmatch(station_id):
        raise ConfigError(f"[station]: id {station_id!r} must look like 34.401.01")
    zone = _get(station, "zone", str, "[station]", "WIB")
    if zone not in ZONES:
        raise ConfigError(f"[station]: zone must be one of {', '.join(ZONES)}")
    lang = _get(station, "lang", str, "[station]", "id")
    if lang not in LANGUAGES:
        raise ConfigError(f"[station]: lang must be one of {', '.join(LANGUAGES)}")
    data_dir = base / _get(station, "data_dir", str, "[station]")
    bad_dir = config_keys.check_data_dir(data_dir)
    if bad_dir:
        raise ConfigError(bad_dir)
    return station_id, zone, lang, data_dir


def _gpio_pins(board: dict[str, Any]) -> tuple[int, int, int, int | None]:
    """[relay_board] kind gpio: relay, pulser, nozzle and optional E-stop pins (BCM numbers)."""
    pins = [_get(board, name, int, "[relay_board]") for name in ("relay_gpio", "pulser_gpio", "nozzle_gpio")]
    estop = board.get("estop_gpio")
    if estop is not None and (not isinstance(estop, int) or isinstance(estop, bool)):
        raise ConfigError("[relay_board]: 'estop_gpio' must be int")
    for number in [*pins, estop]:
        if number is not None and not 0 <= number <= 27:
            raise ConfigError("[relay_board]: GPIO numbers are BCM 0..27")
    return (pins[0], pins[1], pins[2], estop)


def _pump(raw: Any, where: str, kind: str) -> PumpConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    grades = _grades(raw, where)
    product = _get(raw, "product", str, where, grades[0] if grades else None)
    if product not in PRODUCTS:
        raise ConfigError(f"{where}: unknown product {product!r}")
    pump = PumpConfig(
        grades=grades,
        number=_get(raw, "number", int, where),
        product=product,
        channel=_get(raw, "channel", int, where),
        scanner_port=_get(raw, "scanner", str, where),
        pulses_per_litre=_get(raw, "pulses_per_litre", int, where, 100),
        line=_get(raw, "line", int, where, 0),
    )
    if not 1 <= pump.number <= 64:
        raise ConfigError(f"{where}: number must be 1..64")
    top = config_keys.MAX_CHANNEL.get(kind, 15)
    if not 0 <= pump.channel <= top:
        raise ConfigError(f"{where}: channel must be 0..{top} for a {kind} pump controller")
    if not 1 <= pump.pulses_per_litre <= 100_000:
        raise ConfigError(f"{where}: pulses_per_litre must be 1..100000")
    return pump


def _pumps(data: dict[str, Any], board: dict[str, Any], kind: str) -> tuple[list[PumpConfig], tuple[str, ...]]:
    """[[pumps]], checked against each other and the controller; with the controller's ports."""
    pumps = [_pump(raw, f"[[pumps]] #{index + 1}", kind)
             for index, raw in enumerate(_get(data, "pumps", list, "config"))]
    if not pumps:
        raise ConfigError("config: at least one [[pumps]] entry is needed")
    if len({p.number for p in pumps}) != len(pumps) or len({p.key for p in pumps}) != len(pumps):
        raise ConfigError("[[pumps]]: numbers and channels must be unique (channels per line)")
    ports = _ports(board, kind, pumps)
    if kind != "dart" and any(p.grades for p in pumps):
        raise ConfigError("[[pumps]]: nozzles (several grades on one pump) need [relay_board] kind dart")
    if kind == "gpio" and (len(pumps) != 1 or pumps[0].channel != 0):
        raise ConfigError("[relay_board]: kind gpio drives exactly one pump, on channel 0")
    # DART: channel i is the pump at address 0x50 + i, and volumes are 0.01 L
    dart_ok = all(sorted(p.channel for p in pumps if p.line == line) == list(range(sum(p.line == line for p in pumps)))
                  for line in range(len(ports))) and all(p.pulses_per_litre == 100 for p in pumps)
    if kind == "dart" and not dart_ok:
        raise ConfigError("[relay_board]: kind dart needs channels 0..n-1 and pulses_per_litre = 100")
    return pumps, ports


def _timeouts(data: dict[str, Any]) -> Timeouts:
    timeouts_raw = _get(data, "timeouts", dict, "config", {}) or {}
    timeout_values: dict[str, float] = {}
    for name in timeouts_raw:
        if name not in Timeouts.__dataclass_fields__:
            raise ConfigError(f"[timeouts]: unknown setting {name!r}")
        seconds = _get(timeouts_raw, name, float, "[timeouts]")
        if not 0 < seconds <= 86_400:
            raise ConfigError(f"[timeouts]: {name} must be between 0 and 86400 seconds")
        timeout_values[name] = seconds
    return Timeouts(**timeout_values)


def _grades(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    """`nozzles = ["pertalite", "solar"]`: the product of logical nozzles 1, 2, ... of a
    multi-grade DART pump."""
    grades = _get(raw, "nozzles", list, where, []) or []
    if len(grades) > 4:
        raise ConfigError(f"{where}: a pump has at most 4 nozzles")
    for grade in grades:
        if grade not in PRODUCTS:
            raise ConfigError(f"{where}: unknown product {grade!r} in nozzles")
    return tuple(str(g) for g in grades)


def _policy(parse: Any, raw: Any) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _attendant(data: dict[str, Any], pumps: set[int]) -> dict[str, Any]:
    try:
        return {"attendant": parse_attendant(data.get("attendant"), pumps),
                "scanner_beep": parse_beep(data.get("scanners"))}
    except AttendantConfigError as exc:
        raise ConfigError(str(exc)) from exc


def _check_keys(keys: dict[str, Any], where: str) -> None:
    for kid, hexkey in keys.items():
        try:
            actual = key_id(load_public_key_hex(str(hexkey)))
        except (SignatureError, ValueError) as exc:
            raise ConfigError(f"{where}: key {kid}: {exc}") from exc
        if actual != kid:
            raise ConfigError(f"{where}: key id {kid} does not match its key (that key's id is {actual})")


def _ports(board: dict[str, Any], kind: str, pumps: list[PumpConfig]) -> tuple[str, ...]:
    """`port = "/dev/x"`, or `ports = ["/dev/a", "/dev/b"]` for a station with several relay
    boards or DART lines (a pump's `line` picks one)."""
    if "ports" in board:
        ports = board["ports"]
        if not isinstance(ports, list) or not ports or not all(isinstance(x, str) for x in ports):
            raise ConfigError("[relay_board]: ports must be a list of device paths")
        if kind == "gpio":
            raise ConfigError("[relay_board]: kind gpio has no ports")
    else:
        ports = [_get(board, "port", str, "[relay_board]", "gpio" if kind == "gpio" else None)]
    for pump in pumps:
        if not 0 <= pump.line < len(ports):
            raise ConfigError(f"[[pumps]] {pump.number}: line {pump.line} has no port in [relay_board] ports")
    return tuple(str(x) for x in ports)


def _parse_edcs(raw: Any, pumps: set[int]) -> list[EdcConfig]:
    """`[edc]`, or `[[edc]]` once per island, each with the `pumps` it pays for."""
    if raw is None:
        return []
    edcs = [_parse_edc(x) for x in (raw if isinstance(raw, list) else [raw])]
    if len(edcs) > 1:
        claimed = [n for e in edcs for n in e.pumps]
        if any(not e.pumps for e in edcs) or len(claimed) != len(set(claimed)) or not set(claimed) <= pumps:
            raise ConfigError("[[edc]]: with several terminals each names its island's pumps, each pump once")
    return edcs


def _parse_edc(raw: Any) -> EdcConfig:
    from agent.payments.desk import PaymentChoice

    if not isinstance(raw, dict):
        raise ConfigError("[edc]: must be a table")
    known = set(EdcConfig.__dataclass_fields__)
    for name in raw:
        if name not in known:
            raise ConfigError(f"[edc]: unknown setting {name!r}")
    cfg = EdcConfig(
        port=_get(raw, "port", str, "[edc]"),
        baud=_get(raw, "baud", int, "[edc]", 9600),
        ack_timeout_s=_get(raw, "ack_timeout_s", float, "[edc]", 2.0),
        max_retries=_get(raw, "max_retries", int, "[edc]", 3),
        response_timeout_s=_get(raw, "response_timeout_s", float, "[edc]", 120.0),
        scan_payments=tuple(_get(raw, "scan_payments", list, "[edc]", [])),
        pumps=tuple(int(n) for n in _get(raw, "pumps", list, "[edc]", [])),
    )
    if not 0.05 <= cfg.ack_timeout_s <= 30 or not 1 <= cfg.response_timeout_s <= 600:
        raise ConfigError("[edc]: ack_timeout_s must be 0.05..30 and response_timeout_s 1..600 seconds")
    if not 0 <= cfg.max_retries <= 10 or cfg.baud <= 0:
        raise ConfigError("[edc]: max_retries must be 0..10 and baud positive")
    for choice in cfg.scan_payments:
        try:
            PaymentChoice.parse(str(choice))
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"[edc]: scan_payments: {exc}") from exc
    return cfg


def _trust_root(trust: dict[str, Any], base: Path) -> Path | None:
    if "root" not in trust:
        return None
    path: Path = base / str(_get(trust, "root", str, "[trust]"))
    try:
        load_root(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"[trust]: cannot read root {path}: {exc.strerror}") from exc
    except TrustError as exc:
        raise ConfigError(f"[trust]: root {path}: {exc}") from exc
    return path


def _freeze(data: dict[str, Any]) -> FreezePolicy:
    raw = _get(data, "freeze", dict, "config", {}) or {}
    grace = _get(raw, "grace_h", float, "[freeze]", FreezePolicy.grace_h)
    after = _get(raw, "after_grace", str, "[freeze]", FreezePolicy.after_grace)
    if not 0 <= grace <= 24 * 60 or after not in AFTER_GRACE:
        raise ConfigError(f"[freeze]: grace_h must be 0..1440 and after_grace one of {', '.join(AFTER_GRACE)}")
    return FreezePolicy(grace, after)


def load_config(path: Path) -> StationConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, path.parent, path)


def _q(text: str) -> str:
    """A TOML basic string: JSON's escapes (backslash, quote, control characters) are valid TOML."""
    return json.dumps(text)


def render_config(cfg: StationConfig) -> str:
    """TOML for a config, as the demo and provisioning write it."""
    lines = [
        "[station]",
        f"id = {_q(cfg.station_id)}",
        f"zone = {_q(cfg.zone)}",
        f"lang = {_q(cfg.lang)}",
        f"data_dir = {_q(str(cfg.data_dir))}",
        *([f"key = {_q(str(cfg.station_key))}"] if cfg.station_key else []),
        "",
        "[mqtt]",
        f"host = {_q(cfg.broker_host)}",
        f"port = {cfg.broker_port}",
        *([f"username = {_q(cfg.broker_user)}"] if cfg.broker_user else []),
        *([f"password_file = {_q(str(cfg.broker_password_file))}"] if cfg.broker_password_file else []),
        "",
        "[trust]",
        *([f"root = {_q(str(cfg.trust_root))}"] if cfg.trust_root else []),
        *(["allow_trusted_keys = true"] if cfg.allow_trusted_keys else []),
        "",
        "[trust.keys]",
        *[f"{_q(kid)} = {_q(key)}" for kid, key in cfg.trusted_keys.items()],
        "",
        "[relay_board]",
        f"kind = {_q(cfg.relay_board_kind)}",
        (f"ports = [{', '.join(_q(x) for x in (cfg.relay_board_port, *cfg.relay_board_lines))}]"
         if cfg.relay_board_lines else f"port = {_q(cfg.relay_board_port)}"),
        f"baud = {cfg.relay_board_baud}",
        f"active_high = {'true' if cfg.relay_active_high else 'false'}",
        *([f"{name} = {pin}" for name, pin in zip(("relay_gpio", "pulser_gpio", "nozzle_gpio", "estop_gpio"),
                                                   cfg.relay_gpio, strict=True) if pin is not None]
          if cfg.relay_gpio else []),
        "",
        "[scanners]",
        f"baud = {cfg.scanner_baud}",
        f"suffix = {_q(cfg.scanner_suffix)}",
        "",
        "[timeouts]",
        *[f"{name} = {getattr(cfg.timeouts, name)}" for name in Timeouts.__dataclass_fields__],
        "",
        "[freeze]",
        f"grace_h = {float(cfg.freeze.grace_h)}",
        f"after_grace = {_q(cfg.freeze.after_grace)}",
        "",
        "[disk]",
        f"warn_free_mb = {float(cfg.disk.warn_free_mb)}",
        f"refuse_free_mb = {float(cfg.disk.refuse_free_mb)}",
        f"reserve_mb = {float(cfg.disk.reserve_mb)}",
        "",
        "[retention]",
        f"days = {float(cfg.retention.days)}",
        f"mask_plates = {'true' if cfg.retention.mask_plates else 'false'}",
    ]
    for edc in [cfg.edc, *cfg.more_edcs] if cfg.edc is not None else []:
        lines += _render_edc(edc, "[[edc]]" if cfg.more_edcs else "[edc]")
    if cfg.update is not None:
        lines += render_update(cfg.update)
    if cfg.manager_keys:
        lines += ["", "[dashboard.manager_keys]", *[f"{_q(k)} = {_q(v)}" for k, v in cfg.manager_keys.items()]]
    for pump in cfg.pumps:
        lines += _render_pump(pump)
    lines += render_tanks(cfg.tank_gauge)
    return "\n".join(lines) + "\n"


def _render_edc(edc: EdcConfig, header: str) -> list[str]:
    return [
        "",
        header,
        f"port = {_q(edc.port)}",
        f"baud = {edc.baud}",
        f"ack_timeout_s = {edc.ack_timeout_s}",
        f"max_retries = {edc.max_retries}",
        f"response_timeout_s = {edc.response_timeout_s}",
        "scan_payments = [" + ", ".join(_q(c) for c in edc.scan_payments) + "]",
        *([f"pumps = [{', '.join(str(n) for n in edc.pumps)}]"] if edc.pumps else []),
    ]


def _render_pump(pump: PumpConfig) -> list[str]:
    return [
        "",
        "[[pumps]]",
        f"number = {pump.number}",
        f"product = {_q(pump.product)}",
        f"channel = {pump.channel}",
        f"scanner = {_q(pump.scanner_port)}",
        f"pulses_per_litre = {pump.pulses_per_litre}",
        *([f"nozzles = [{', '.join(_q(g) for g in pump.grades)}]"] if pump.grades else []),
        *([f"line = {pump.line}"] if pump.line else []),
    ]


def _update_table(raw: Any, base: Path, config_path: Path | None, journal: Path) -> UpdateConfig | None:
    try:
        return parse_update(raw, base, config_path, journal)
    except UpdateConfigError as exc:
        raise ConfigError(str(exc)) from exc
