"""Topics of the attendant's devices, on the station broker only (never bridged).

Under their own root, not spbu/v1/<station>/, because they carry full plates: the manager's
dashboard and Home Assistant read spbu/v1/<station>/# and must not see them.

  att/v1/<station>/in/<device>/shift          device -> agent: hello, signin, signout, close
  att/v1/<station>/in/<device>/<pump>/<verb>  device -> agent: scan, pay, stop, reprint
  att/v1/<station>/out/<device>               agent -> device: replies (sign-in, report, receipt)
  att/v1/<station>/pump/<pump>                agent -> devices: the pump's view (retained)

The broker's ACL lets a device write only under its own <device> and only its own pumps,
and read only its own replies and its own pumps (agent/attendant/acl.py).
"""

from __future__ import annotations

VERBS = ("scan", "pay", "stop", "reprint")


def root(station: str) -> str:
    return f"att/v1/{station}"


def requests(station: str) -> str:
    return f"att/v1/{station}/in/#"


def shift_in(station: str, device: str) -> str:
    return f"att/v1/{station}/in/{device}/shift"


def pump_in(station: str, device: str, pump: int, verb: str) -> str:
    return f"att/v1/{station}/in/{device}/{pump}/{verb}"


def reply(station: str, device: str) -> str:
    return f"att/v1/{station}/out/{device}"


def pump_view(station: str, pump: int) -> str:
    return f"att/v1/{station}/pump/{pump}"


def shift_report(station: str) -> str:
    """To headquarters (bridged out like tx)."""
    return f"spbu/v1/{station}/shift"


def parse_request(station: str, topic: str) -> tuple[str, int | None, str] | None:
    """(device, pump or None, verb) of a request topic, or None for anything else."""
    prefix = f"att/v1/{station}/in/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) == 2 and parts[1] == "shift" and parts[0]:
        return parts[0], None, "shift"
    if len(parts) == 3 and parts[0] and parts[1].isdigit() and parts[2] in VERBS:
        return parts[0], int(parts[1]), parts[2]
    return None
