"""Mosquitto configuration for a station (and a lab headquarters) from the templates in
deploy/mosquitto/*.in: fill the @NAME@ placeholders, refuse to leave any unfilled, write the
ACL files beside the config, and make the dashboard's password file with mosquitto_passwd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent.config import STATION_ID

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


class BrokerConfigError(ValueError):
    pass


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise BrokerConfigError(f"{template.name}: no value for {', '.join(missing)}")
    for name, value in values.items():
        if "\n" in value or not value:
            raise BrokerConfigError(f"{template.name}: {name} must be one non-empty line")
        text = text.replace(f"@{name}@", value)
    return text


@dataclass(frozen=True)
class StationBroker:
    station: str
    hq_host: str
    hq_port: int
    cafile: Path
    certfile: Path
    keyfile: Path
    agent_port: int = 1883
    ws_port: int = 9001
    ws_interface: str = "eth0"
    dashboard_user: str = "dashboard"
    agent_user: str = "spbu-agent"  # the agent's login on the loopback listener
    # The dashboard's TLS WebSockets listener: the station's server certificate and key.
    ws_certfile: Path | None = None
    ws_keyfile: Path | None = None
    # The attendants' phones over TLS WebSockets: on when the station's server certificate is given.
    attendant_certfile: Path | None = None
    attendant_keyfile: Path | None = None
    attendant_port: int = 9443


def write_station_broker(cfg: StationBroker, etc: Path, templates: Path = TEMPLATES) -> Path:
    """Writes spbu.conf and the two ACL files into etc; returns the config's path. The password
    file (etc/dashboard.passwd) is made separately with write_password_file."""
    if not STATION_ID.fullmatch(cfg.station):
        raise BrokerConfigError(f"station id {cfg.station!r} must look like 34.401.01")
    etc = etc.resolve()  # mosquitto wants absolute paths
    etc.mkdir(parents=True, exist_ok=True)
    values = {"STATION": cfg.station, "HQ_HOST": cfg.hq_host, "HQ_PORT": str(cfg.hq_port),
              "CAFILE": str(cfg.cafile.resolve()), "CERTFILE": str(cfg.certfile.resolve()),
              "KEYFILE": str(cfg.keyfile.resolve()),
              "AGENT_PORT": str(cfg.agent_port), "WS_PORT": str(cfg.ws_port), "WS_INTERFACE": cfg.ws_interface,
              "DASHBOARD_USER": cfg.dashboard_user, "AGENT_USER": cfg.agent_user, "ETC": str(etc)}
    if cfg.ws_certfile is None or cfg.ws_keyfile is None:
        raise BrokerConfigError("the dashboard's WebSockets listener needs the station's server certificate and key "
                                "(TLS: its password must not cross the LAN in clear)")
    values |= {"WS_CERTFILE": str(cfg.ws_certfile.resolve()), "WS_KEYFILE": str(cfg.ws_keyfile.resolve())}
    for name in ("station-agent.acl", "station-dashboard.acl"):
        (etc / name).write_text(render(templates / f"{name}.in", values))
    conf = etc / "spbu.conf"
    text = render(templates / "station.conf.in", values)
    if cfg.attendant_certfile is not None and cfg.attendant_keyfile is not None:
        text = _with_attendant_listener(text, cfg, etc, values, templates)
    conf.write_text(text)
    return conf


def _with_attendant_listener(text: str, cfg: StationBroker, etc: Path, values: dict[str, str],
                             templates: Path) -> str:
    """The attendants' TLS WebSockets listener, placed before the bridge section (a listener
    after `connection` would be read as part of the bridge's settings)."""
    from agent.attendant.acl import render_acl
    from agent.attendant.devices import load_devices

    assert cfg.attendant_certfile is not None and cfg.attendant_keyfile is not None
    block = render(templates / "station-attendant.conf.in", {
        **values, "ATT_PORT": str(cfg.attendant_port),
        "ATT_CERTFILE": str(cfg.attendant_certfile.resolve()), "ATT_KEYFILE": str(cfg.attendant_keyfile.resolve())})
    (etc / "station-attendant.acl").write_text(render_acl(cfg.station, load_devices(etc)))
    passwd = etc / "attendant.passwd"
    if not passwd.exists():
        passwd.touch(mode=0o600)  # devices are added with `spbu attendant device`
    at = text.find("\nconnection hq\n")
    if at < 0:
        return text + block
    start = text.rfind("\n\n", 0, at)  # the bridge's comment block starts after a blank line
    start = at if start < 0 else start
    return text[:start] + "\n" + block + text[start:]


def write_hq_broker(etc: Path, port: int, cafile: Path, certfile: Path, keyfile: Path, crlfile: Path,
                    bind: str = "0.0.0.0", service: str = "hq-collector", templates: Path = TEMPLATES) -> Path:
    etc = etc.resolve()
    etc.mkdir(parents=True, exist_ok=True)
    values = {"HQ_PORT": str(port), "HQ_BIND": bind, "CAFILE": str(cafile), "CERTFILE": str(certfile),
              "KEYFILE": str(keyfile), "ETC": str(etc), "HQ_SERVICE": service, "CRLFILE": str(crlfile.resolve())}
    (etc / "hq.acl").write_text(render(templates / "hq.acl.in", values))
    conf = etc / "hq-broker.conf"
    conf.write_text(render(templates / "hq-broker.conf.in", values))
    return conf


def find_mosquitto_passwd() -> str:
    for candidate in (shutil.which("mosquitto_passwd"), "/usr/bin/mosquitto_passwd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerConfigError("mosquitto_passwd is not installed; run: sudo apt-get install mosquitto")


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """Hashed with mosquitto's own tool (the format is the broker's business)."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for user, password in users.items():
        if not user or ":" in user or not password:
            raise BrokerConfigError(f"bad dashboard user {user!r} or empty password")
        result = subprocess.run([find_mosquitto_passwd(), "-b", str(path), user, password],
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise BrokerConfigError(f"mosquitto_passwd failed: {result.stderr.strip() or result.stdout.strip()}")


def write_agent_login(etc: Path, user: str = "spbu-agent", existing: Path | None = None) -> Path:
    """The agent's broker login: a random password kept in etc/agent.password (mode 600,
    for the agent's service user; the broker never reads it) and its hash in
    etc/agent.passwd for the loopback listener. An existing password is kept (`existing`:
    the one `spbu provision` made, /etc/spbu/agent.password)."""
    import secrets

    secret = etc / "agent.password" if existing is None else existing
    if not secret.exists() or not secret.read_text().strip():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
    write_password_file(etc / "agent.passwd", {user: secret.read_text().strip()})
    return secret
