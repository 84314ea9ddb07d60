"""The demo's national quota scene: headquarters' usage ledger on a private PostgreSQL, and
a second station in the same area that refuses a vehicle which used its quota at the first.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import TYPE_CHECKING, Any

from agent.domain import PRODUCTS, format_litres
from simulators.postgres import PostgresServer

if TYPE_CHECKING:
    from agent.cli.demo import Customer, DemoStation
    from hq.ledger_node import LedgerNode
    from simulators.broker import MosquittoBroker
    from simulators.hq import HeadquartersSim

SECOND_STATION = "34.401.02"


def private_postgres() -> PostgresServer:
    """Headquarters' database for the demo (its own temporary directory and port)."""
    return PostgresServer(durable=False).start()


def start_ledger(broker: MosquittoBroker, dsn: str, hq: HeadquartersSim) -> LedgerNode:
    from hq.ledger_node import LedgerNode

    tag = uuid.uuid4().hex[:8]
    keys = hq.station_keys  # each demo station adds its key as it starts
    return LedgerNode(broker.host, broker.port, dsn, [hq.key], name=f"demo-ledger-{tag}", group=f"demo{tag}",
                      tick_s=5, verifier=keys.verify if keys is not None else None).start()


def _say(lang: str, id_text: str, en_text: str) -> None:
    print(id_text if lang == "id" else en_text, flush=True)


def second_station(demo: DemoStation, lang: str, customer: type[Customer]) -> dict[str, Any]:
    """A full tank at the first station, then the same QR at the second: refused, with the
    litres used elsewhere on the attendant's line. (`customer`: the demo's Customer, passed
    in so this module and agent/cli/demo.py do not import each other.)"""
    Customer = customer
    assert demo.hq is not None and demo.station is not None
    pump, product = next((n, p) for n, p in sorted(demo.products.items(), key=lambda item: item[1] != "solar"))
    car = next(e for e in reversed(demo.registry) if e.category == "private_car" and e.status == "active"
               and e.products == PRODUCTS[product])
    _say(lang, f"\nKuota nasional: {car.plate} mengisi penuh di {demo.station_id}, lalu ke SPBU {SECOND_STATION}",
         f"\nNational quota: {car.plate} fills up at {demo.station_id}, then drives to {SECOND_STATION}")
    other = type(demo)(pumps=len(demo.products), broker=demo.broker, hq=demo.hq, station_id=SECOND_STATION,
                        workdir=demo.workdir / SECOND_STATION, quiet=demo.quiet, lang=lang)
    try:
        other.start()
        first = demo.serve([Customer("national: full tank", pump, demo.token(car.vehicle_id), 200_000, "ok")], 60)
        took = int(first[0].transaction["dispensed_ml"]) if first and first[0].transaction else 0
        assert other.station is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            day = other.station.clock.peek(dt.datetime.now(dt.UTC), time.monotonic()).quota_day
            seen = other.station.usage.elsewhere(car.vehicle_id, product, day)
            if seen is not None and seen.used_ml >= took:
                break
            time.sleep(0.05)
        second = other.serve([Customer("national: second station", pump, other.token(car.vehicle_id), 20_000,
                                       "quota_used_elsewhere")], 30)
        decision = second[0].decision if second else None
        ok = bool(took and decision and decision["reason"] == "quota_used_elsewhere")
        detail = (f"{format_litres(took, lang)} L at {demo.station_id}, then "
                  f"{decision['reason'] if decision else 'no decision'} at {SECOND_STATION}")
        return {"ok": ok, "vehicle_plate": car.plate, "first_station_ml": took,
                "second_station": decision["reason"] if decision else None,
                "elsewhere_ml": decision.get("elsewhere_ml") if decision else None, "detail": detail}
    finally:
        other.close()
