"""The agent's login to its station broker (loopback listener, no anonymous clients).

The password lives in a root-only file beside the config (`spbu keys broker-config`
writes it and hashes it into the broker's password file); it is read once at start."""

from __future__ import annotations

from typing import Protocol

from agent.config import ConfigError, StationConfig


class _Client(Protocol):
    def username_pw_set(self, username: str | None, password: str | None = None) -> None: ...


def broker_login(config: StationConfig) -> tuple[str, str] | None:
    if not config.broker_user:
        return None
    if config.broker_password_file is None:
        raise ConfigError("[mqtt]: username needs password_file")
    try:
        password = config.broker_password_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"[mqtt]: cannot read {config.broker_password_file}: {exc.strerror}") from exc
    if not password:
        raise ConfigError(f"[mqtt]: {config.broker_password_file} is empty")
    return config.broker_user, password


def apply_login(config: StationConfig, *clients: _Client) -> None:
    login = broker_login(config)
    if login is not None:
        for client in clients:
            client.username_pw_set(*login)
