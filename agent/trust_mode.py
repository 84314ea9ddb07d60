"""Which trust mode a station may run in.

With a root of trust (root.json, agent/trust/root.py) each role has its own keys: the online
token key cannot sign an allow-list or a command. A config that lists only
`[trust.keys]` gives every listed key every role; that is for tests and labs. A station
service (started by systemd, which sets INVOCATION_ID) refuses it unless the config says
`allow_trusted_keys = true` under [trust], so no production station runs in it by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from agent.config import ConfigError, StationConfig


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("INVOCATION_ID") or env.get("NOTIFY_SOCKET"))


def check_trust_mode(config: StationConfig, env: Mapping[str, str] | None = None) -> None:
    if config.trust_root is None and under_systemd(env) and not config.allow_trusted_keys:
        raise ConfigError("[trust]: a station service needs a root of trust (root = \"root.json\"); "
                          "[trust.keys] alone lets every key sign every role (set allow_trusted_keys = true "
                          "only in a lab)")
