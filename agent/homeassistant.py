"""Home Assistant MQTT discovery: a manager who runs Home Assistant sees the station's pumps,
today's totals, the link and the alerts without configuring anything.

Configs are retained under `homeassistant/…` and published again when Home Assistant's
birth message (`homeassistant/status` = `online`) arrives, since it may have restarted with
an empty broker. A pump removed from the station's config has its entities removed by an
empty retained config, which is how discovery deletes an entity.
"""

from __future__ import annotations

import json
from typing import Any

from agent import __version__, topics
from agent.domain import PRODUCT_LABELS

PREFIX = "homeassistant"
BIRTH_TOPIC = f"{PREFIX}/status"


def _slug(station: str) -> str:
    return "spbu_" + station.replace(".", "_")


def _device(station: str) -> dict[str, Any]:
    return {"identifiers": [_slug(station)], "name": f"SPBU {station}", "manufacturer": "spbu-edge",
            "model": "station agent", "sw_version": __version__}


def _availability(station: str) -> dict[str, Any]:
    return {"availability_topic": topics.state(station), "availability_template": "{{ value_json.state }}",
            "payload_available": "online", "payload_not_available": "offline"}


def pump_configs(station: str, pump: int) -> dict[str, dict[str, Any]]:
    slug = _slug(station)
    base = {"device": _device(station), **_availability(station), "state_topic": topics.pump_view(station, pump)}
    return {
        f"{PREFIX}/sensor/{slug}/pump_{pump}_state/config": {
            **base, "name": f"Pump {pump} state", "unique_id": f"{slug}_pump_{pump}_state",
            "value_template": "{{ value_json.state }}", "icon": "mdi:gas-station",
            "json_attributes_topic": topics.pump_view(station, pump),
            "json_attributes_template": "{{ (value_json.session or {}) | tojson }}"},
        f"{PREFIX}/sensor/{slug}/pump_{pump}_litres/config": {
            **base, "name": f"Pump {pump} litres", "unique_id": f"{slug}_pump_{pump}_litres",
            "value_template": "{{ ((value_json.session.dispensed_ml if value_json.session else 0) / 1000)"
                              " | round(2) }}",
            "unit_of_measurement": "L", "device_class": "volume", "state_class": "measurement"},
    }


def station_configs(station: str, products: list[str]) -> dict[str, dict[str, Any]]:
    slug = _slug(station)
    device = _device(station)
    configs: dict[str, dict[str, Any]] = {}
    for product in products:
        configs[f"{PREFIX}/sensor/{slug}/today_{product}_litres/config"] = {
            "device": device, **_availability(station), "state_topic": topics.totals(station),
            "name": f"{PRODUCT_LABELS.get(product, product)} today", "unique_id": f"{slug}_today_{product}_litres",
            "value_template": "{{ ((value_json.products." + product + ".litres_ml if value_json.products."
                              + product + " is defined else 0) / 1000) | round(2) }}",
            "unit_of_measurement": "L", "device_class": "volume", "state_class": "total_increasing"}
    configs[f"{PREFIX}/binary_sensor/{slug}/online/config"] = {
        "device": device, "state_topic": topics.state(station), "name": "Agent online",
        "unique_id": f"{slug}_online", "device_class": "connectivity",
        "value_template": "{{ 'ON' if value_json.state == 'online' else 'OFF' }}"}
    configs[f"{PREFIX}/binary_sensor/{slug}/hq_link/config"] = {
        "device": device, **_availability(station), "state_topic": topics.state(station),
        "name": "Headquarters link", "unique_id": f"{slug}_hq_link", "device_class": "connectivity",
        "value_template": "{{ 'ON' if value_json.hq_link | default('down') == 'up' else 'OFF' }}"}
    configs[f"{PREFIX}/sensor/{slug}/outbox/config"] = {
        "device": device, **_availability(station), "state_topic": topics.state(station),
        "name": "Transactions awaiting headquarters", "unique_id": f"{slug}_outbox",
        "value_template": "{{ value_json.outbox_depth | default(0) }}", "state_class": "measurement"}
    configs[f"{PREFIX}/sensor/{slug}/alerts/config"] = {
        "device": device, **_availability(station), "state_topic": topics.alerts(station),
        "name": "Active alerts", "unique_id": f"{slug}_alerts", "icon": "mdi:alert",
        "value_template": "{{ value_json.active | length }}",
        "json_attributes_topic": topics.alerts(station),
        "json_attributes_template": "{{ {'alerts': value_json.active | map(attribute='alert') | list} | tojson }}"}
    return configs


def discovery(station: str, pumps: dict[int, str], announced_before: list[int]) -> list[tuple[str, bytes]]:
    """(topic, retained payload) to publish: configs for every pump and the station, and an
    empty payload for each entity of a pump announced before but no longer configured."""
    messages: list[tuple[str, bytes]] = []
    for pump in sorted(set(announced_before) - set(pumps)):
        messages += [(topic, b"") for topic in pump_configs(station, pump)]
    for pump in sorted(pumps):
        messages += [(t, json.dumps(c).encode()) for t, c in pump_configs(station, pump).items()]
    products = sorted(set(pumps.values()))
    messages += [(t, json.dumps(c).encode()) for t, c in station_configs(station, products).items()]
    return messages
