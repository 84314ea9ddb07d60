"""What headquarters accepts from a station's transaction topic, checked before anything is
stored; the rest of a record is the station's business (and its signature's)."""

from __future__ import annotations

import json
import re
from typing import Any

from agent import topics

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RecordError(ValueError):
    pass


def json_object(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError("not JSON") from exc
    if not isinstance(body, dict):
        raise RecordError("not an object")
    return body


def parse_record(topic: str, payload: bytes) -> dict[str, Any]:
    """The fields the collector and the ledger rely on, checked."""
    station = topics.station_of(topic)
    record = json_object(payload)
    if record.get("station") != station or station is None:
        raise RecordError("station in the record is not the topic's")
    quota = record.get("quota")
    if (not isinstance(record.get("tx_id"), str) or not isinstance(record.get("vehicle_id"), str)
            or not isinstance(record.get("product"), str) or not isinstance(quota, dict)
            or not isinstance(quota.get("day"), str) or not isinstance(quota.get("limit_ml"), int)
            or not isinstance(record.get("dispensed_ml"), int)):
        raise RecordError("tx_id, vehicle_id, product, dispensed_ml or quota missing or mistyped")
    if not str(record["vehicle_id"]).isdigit() or not 0 < int(record["vehicle_id"]) < 2**64:
        raise RecordError("vehicle_id is not a 64-bit id")
    if not DAY_RE.match(quota["day"]):
        raise RecordError("quota.day is not YYYY-MM-DD")
    return record
