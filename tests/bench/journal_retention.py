"""A year of fills, accelerated: the journal's size with retention vs without.

    python tests/bench/journal_retention.py [--days 365] [--fills-per-day 500]
        [--retention-days 90] --json OUT

Each fill goes through the journal as the station does it (open with its quota
reservation, close with its outbox row, headquarters' acknowledgement), on a simulated
clock that advances a day per `--fills-per-day` fills; the retention pass runs once a
simulated hour's worth of fills, as the station runs it hourly. The baseline is the same
journal without retention, in the same run. Sizes are of the SQLite file; its WAL is
reported apart (SQLite's checkpoints bound it, about 4 MB, whatever the history).
The journal's fsync is off here: this measures bytes, not time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import agent.journal  # noqa: E402
from agent.journal import Journal  # noqa: E402
from agent.retention import Retention, RetentionPolicy  # noqa: E402

STATION = "34.401.01"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LETTERS = "ABDEFGHKLNPRSTWZ"


class SimClock:
    """Stands in for the journal's `time` module: the simulated wall clock."""

    def __init__(self) -> None:
        self.now = START

    def time(self) -> float:
        return self.now


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _plate(rng: random.Random) -> str:
    return f"{rng.choice(LETTERS)} {rng.randint(1, 9999)} {rng.choice(LETTERS)}{rng.choice(LETTERS)}"


def _fill(journal: Journal, rng: random.Random, vehicles: list[int], day: str) -> None:
    vehicle = rng.choice(vehicles)
    product = "solar" if vehicle % 3 == 0 else "pertalite"
    preset = rng.randint(5, 60) * 1000
    session = journal.open_session(STATION, 1 + vehicle % 8, vehicle, _plate(rng), product, day, 120_000, 0,
                                   preset, 10_000)
    dispensed = preset - rng.randint(0, 2000)
    # A record the size of a real one (tx.schema.json), so the outbox's share is realistic.
    record = {"schema": "spbu.tx/1", "tx_id": session.tx_id, "station": STATION, "pump": session.pump,
              "vehicle_id": str(vehicle), "plate_masked": "B ***4 XYZ", "product": product,
              "dispensed_ml": dispensed, "preset_ml": preset, "unit_price_idr": 10_000,
              "amount_idr": dispensed * 10, "payment": {"method": "cash", "status": "paid"},
              "quota": {"day": day, "limit_ml": 120_000, "before_ml": 0, "after_ml": dispensed},
              "end_reason": "nozzle_hung", "final_state": "completed", "allowlist_version": 7}
    journal.close_session(session, dispensed, dispensed * 10, "nozzle_hung",
                          (session.tx_id, f"spbu/v1/{STATION}/tx", record))
    journal.outbox_ack([session.tx_id])


def simulate(path: Path, days: int, per_day: int, retention_days: float | None, seed: int = 7,
             sample_every: int = 30) -> dict[str, Any]:
    """Run the accelerated year into a journal at `path`; sizes sampled every `sample_every` days."""
    clock = SimClock()
    names = vars(agent.journal)  # the journal reads time.time(): give it the simulated clock
    saved = names["time"]
    names["time"] = clock
    rng = random.Random(seed)
    vehicles = [rng.getrandbits(63) or 1 for _ in range(max(10, per_day * 4))]
    journal = Journal(path)
    journal._db.execute("PRAGMA synchronous=OFF")  # bytes, not fsync time, are measured here
    retention = Retention(journal, RetentionPolicy(days=retention_days)) if retention_days is not None else None
    per_hour = max(1, per_day // 24)
    sizes: list[tuple[int, int]] = []
    wal = 0
    try:
        for day_index in range(days):
            day = time.strftime("%Y-%m-%d", time.gmtime(START + day_index * 86_400))
            for n in range(per_day):
                clock.now = START + day_index * 86_400 + n * (86_400 / per_day)
                _fill(journal, rng, vehicles, day)
                if retention is not None and (n + 1) % per_hour == 0:
                    retention.prune(clock.now)
            if (day_index + 1) % sample_every == 0 or day_index + 1 == days:
                sizes.append((day_index + 1, _size(path)))
                wal = max(wal, _size(Path(f"{path}-wal")))
        rows = int(journal._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
        clear = int(journal._db.execute("SELECT COUNT(*) FROM sessions WHERE plate NOT LIKE '%*%'").fetchone()[0])
    finally:
        journal.close()
        names["time"] = saved
    return {"sizes_by_day": sizes, "final_bytes": _size(path), "max_bytes": max(s for _, s in sizes),
            "wal_max_bytes": wal,
            "sessions_kept": rows, "plates_in_clear": clear,
            "bytes_per_fill_kept": round(_size(path) / max(1, rows), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--fills-per-day", type=int, default=500)
    parser.add_argument("--retention-days", type=float, default=90.0)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    if not 1 <= args.days <= 3650 or not 1 <= args.fills_per_day <= 20_000:
        parser.error("--days 1..3650 and --fills-per-day 1..20000")
    sample = max(1, min(30, args.days // 4))
    with tempfile.TemporaryDirectory(prefix="spbu-retention-") as tmp:
        started = time.monotonic()
        kept = simulate(Path(tmp) / "retained.sqlite", args.days, args.fills_per_day, args.retention_days,
                        sample_every=sample)
        elapsed = time.monotonic() - started
        unbounded = simulate(Path(tmp) / "unbounded.sqlite", args.days, args.fills_per_day, None,
                             sample_every=sample)
    # Bounded: once the retention window is full, the file stops growing (10% slack for
    # SQLite's page reuse and the WAL).
    window = [s for d, s in kept["sizes_by_day"] if d >= args.retention_days + 2]
    plateau = window[0] if window else kept["final_bytes"]
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "params": {"days": args.days, "fills_per_day": args.fills_per_day, "retention_days": args.retention_days,
                   "fills": args.days * args.fills_per_day},
        "results": {"retention": {**kept, "seconds": round(elapsed, 1)}, "no_retention": unbounded},
        "targets": {
            "journal_bounded_after_window": {"measured": kept["final_bytes"], "target": round(plateau * 1.1),
                                             "met": kept["final_bytes"] <= plateau * 1.1},
            "no_plate_in_clear_after_ack": {"measured": kept["plates_in_clear"], "target": 0,
                                            "met": kept["plates_in_clear"] == 0},
        },
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
