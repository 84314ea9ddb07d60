"""MQTT topic names. Station to headquarters under spbu/v1/<station>/, the reverse under hq/v1/."""

from __future__ import annotations

ALLOWLIST = "hq/v1/allowlist"
POLICY = "hq/v1/policy"
TX_ALL = "spbu/v1/+/tx"


def tx(station: str) -> str:
    return f"spbu/v1/{station}/tx"


def state(station: str) -> str:
    return f"spbu/v1/{station}/state"


def event(station: str) -> str:
    return f"spbu/v1/{station}/event"


def ack(station: str) -> str:
    return f"hq/v1/ack/{station}"


def station_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "spbu" and parts[1] == "v1":
        return parts[2]
    return None


# Live view for the station manager's dashboard (retained on the station broker).
def pump_view(station: str, pump: int) -> str:
    return f"spbu/v1/{station}/pump/{pump}"


def totals(station: str) -> str:
    return f"spbu/v1/{station}/totals"


def recent(station: str) -> str:
    return f"spbu/v1/{station}/recent"


def alerts(station: str) -> str:
    return f"spbu/v1/{station}/alerts"


def command(station: str) -> str:
    """Signed commands for one station (headquarters or the station manager's dashboard)."""
    return f"hq/v1/cmd/{station}"


def command_result(station: str) -> str:
    return f"spbu/v1/{station}/cmd_result"


def heartbeat(station: str) -> str:
    return f"spbu/v1/{station}/heartbeat"


TX_SHARED = "$share/collectors/spbu/v1/+/tx"  # several collector processes share the load
# Signed allow-list and root of trust (issue 3): retained, content-addressed chunks.
ALLOWLIST_MANIFEST = "hq/v1/allowlist/manifest"
ALLOWLIST_CHUNK_PREFIX = "hq/v1/allowlist/chunk/"
ROOT_PREFIX = "hq/v1/root/"
ROOT_ALL = "hq/v1/root/+"


def allowlist_chunk(sha256_hex: str) -> str:
    return f"{ALLOWLIST_CHUNK_PREFIX}{sha256_hex}"


def root(version: int) -> str:
    return f"{ROOT_PREFIX}{version}"


# Signed software releases (issue 21): retained manifest, content-addressed chunks.
SOFTWARE_MANIFEST = "hq/v1/software/manifest"
SOFTWARE_CHUNK_PREFIX = "hq/v1/software/chunk/"
UPDATE_ALL = "spbu/v1/+/update"


def software_chunk(sha256_hex: str) -> str:
    return f"{SOFTWARE_CHUNK_PREFIX}{sha256_hex}"


def update(station: str) -> str:
    """The station's update state (retained): running version, trial, rollback and why."""
    return f"spbu/v1/{station}/update"


# National quota (issue 15): reservations and sync requests up, signed usage batches down.
USAGE_PREFIX = "hq/v1/usage/"
USAGE_TICK = "hq/v1/usage/tick"  # headquarters' signed heartbeat for every station's feed
RESERVE_SHARED = "$share/collectors/spbu/v1/+/reserve"
USAGE_SYNC_SHARED = "$share/collectors/spbu/v1/+/usage_sync"


def usage(station: str) -> str:
    return f"{USAGE_PREFIX}{station}"


def reserve(station: str) -> str:
    return f"spbu/v1/{station}/reserve"


def usage_sync(station: str) -> str:
    return f"spbu/v1/{station}/usage_sync"
