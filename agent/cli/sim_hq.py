"""`spbu sim hq` without `--db`: headquarters with its national usage ledger on a private
PostgreSQL (a temporary directory and a free port, as the demo's), so stations on this
broker count a vehicle's quota across stations, not each its own sales.

Without PostgreSQL installed it says so and collects in memory, each station counting only
its own sales (the behaviour before the ledger).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.cli.errors import CliError, stop_on_signals

# The policy's signed freshness settings for the feed (docs/national-quota.md).
USAGE_FEED = {"stale_after_s": 120, "offline_share": 0.5}


def run_with_private_ledger(args: argparse.Namespace) -> int | None:
    """Run until a signal; None when PostgreSQL is missing (the caller collects in memory)."""
    from agent.trust.signing import load_private_key
    from hq.ledger_node import LedgerNode
    from hq.tx_verify import StationKeys, TxSignatureError
    from simulators.hq import HeadquartersSim, synthetic_registry
    from simulators.postgres import PostgresError, PostgresServer

    keys = None
    if args.station_certs is not None:
        try:
            keys = StationKeys.from_directory(args.station_certs, args.ca)
        except (OSError, ValueError, TxSignatureError) as exc:
            raise CliError(f"{args.station_certs}: {exc}") from exc
    try:
        server = PostgresServer(durable=True).start()
    except PostgresError as exc:
        print(f"no private PostgreSQL ({exc}): collecting in memory; each station counts only its own sales",
              flush=True)
        return None
    hq = node = None
    try:
        dsn = server.create_database("ledger")
        hq = HeadquartersSim(args.host, args.port, synthetic_registry(args.vehicles),
                             key=load_private_key(args.key) if args.key else None, collect=False,
                             station_keys=keys, usage_feed=USAGE_FEED)
        hq.start()
        hq.publish_documents()
        node = LedgerNode(args.host, args.port, dsn, [hq.key], name=args.name,
                          on_alert=lambda a: print(f"ALERT {json.dumps(a.as_dict())}", flush=True),
                          verifier=keys.verify if keys is not None else None).start()
        print(f"headquarters on {args.host}:{args.port}: key {hq.key_id} ({hq.public_key_hex}), "
              f"{len(hq.registry)} vehicles published; national usage ledger {node.name} on a private "
              f"PostgreSQL ({dsn}); station signatures "
              f"{'checked' if keys is not None else 'NOT checked (give --station-certs)'}", flush=True)
        _follow(node, dsn)
    finally:
        if node is not None:
            node.close()
        if hq is not None:
            hq.close()
        server.close()
    return 0


def _follow(node: Any, dsn: str) -> None:
    """Print each transaction the ledger stores, and its alerts, until a signal."""
    import psycopg

    stop = stop_on_signals()
    last = 0.0
    seen: set[str] = set()
    with psycopg.connect(dsn, autocommit=True) as db:
        while True:
            stopping = stop.wait(1.0)  # one more look after the signal: nothing stored goes unprinted
            # A window back from the newest seen: a transaction committed late with an earlier
            # stored_at is still printed, once.
            rows = db.execute("SELECT tx_id, station, product, dispensed_ml, extract(epoch FROM stored_at)::float8"
                              " FROM tx WHERE stored_at >= to_timestamp(%s) ORDER BY stored_at",
                              (last - 10,)).fetchall()
            for tx_id, station, product, ml, at in rows:
                if tx_id not in seen:
                    seen.add(tx_id)
                    print(f"{tx_id} {station} {product} {ml} ml", flush=True)
                last = max(last, float(at))
            if stopping:
                return
