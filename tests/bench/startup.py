"""Start-up after a power cut to ready, with a long journal history vs an empty journal.

    python tests/bench/startup.py [--transactions 1000000] [--runs 5] --json OUT

"Ready" is measured from outside, as a power cut would see it: from spawning
`python -m agent agent run` until the relay board receives the agent's HOST_HELLO, which
the agent sends only after it has opened the journal, re-verified the signed documents
and scheduled the recovery of open sessions. The baseline is the same agent with an
empty journal, measured in the same run. Medians of --runs starts each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.config import PumpConfig, StationConfig, render_config  # noqa: E402
from agent.journal import Journal, to_db_id  # noqa: E402
from simulators.broker import die_with_parent  # noqa: E402
from simulators.hq import HeadquartersSim, synthetic_registry  # noqa: E402
from simulators.relay_board import RelayBoardSim  # noqa: E402
from simulators.scanner import ScannerSim  # noqa: E402

STATION = "34.401.01"
TARGET_READY_S = 1.5


def fill_history(path: Path, transactions: int, unacked: int, seed: int = 1) -> None:
    """A journal as years of trading leave it: closed sessions, quota rows, some outbox."""
    Journal(path).close()
    rng = random.Random(seed)
    vehicles = [rng.getrandbits(64) or 1 for _ in range(max(1, transactions // 10))]
    db = __import__("sqlite3").connect(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # building the fixture, not measuring it
    start = time.time() - 400 * 86400
    batch = []
    quota: dict[tuple[int, str, str], int] = {}
    for seq in range(1, transactions + 1):
        vid = to_db_id(vehicles[seq % len(vehicles)])
        product = "solar" if seq % 3 == 0 else "pertalite"
        opened = start + seq * (400 * 86400 / transactions)
        day = time.strftime("%Y-%m-%d", time.gmtime(opened + 7 * 3600))
        ml = rng.randint(5_000, 60_000)
        batch.append((f"{STATION}-{seq:08d}", 1 + seq % 8, vid, "B 1 XX", product, day, 120_000, 0, ml, ml,
                      10_000, "closed", ml, ml * 10, "nozzle_hung", opened, opened + 90))
        key = (vid, product, day)
        quota[key] = quota.get(key, 0) + ml
        if len(batch) == 50_000:
            _insert(db, batch)
            batch = []
    _insert(db, batch)
    db.executemany("INSERT OR REPLACE INTO quota (vehicle_id, product, day, used_ml, reserved_ml)"
                   " VALUES (?, ?, ?, ?, 0)", [(*k, v) for k, v in quota.items()])
    db.executemany("INSERT INTO outbox (msg_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                   [(f"{STATION}-{transactions - i:08d}", f"spbu/v1/{STATION}/tx", b"{}", time.time())
                    for i in range(min(unacked, transactions))])
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _insert(db: Any, rows: list[tuple[Any, ...]]) -> None:
    db.executemany(
        "INSERT INTO sessions (tx_id, pump, vehicle_id, plate, product, quota_day, limit_ml, quota_before_ml,"
        " preset_ml, reserved_ml, price_idr, state, dispensed_ml, amount_idr, end_reason, opened_at, closed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def time_to_ready(config: Path, board: RelayBoardSim) -> float:
    hellos = board.host_hellos()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "agent", "agent", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        while board.host_hellos() == hellos:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited with {proc.returncode}")
            if time.monotonic() - started > 30:
                raise TimeoutError("agent not ready in 30 s")
            time.sleep(0.001)
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--unacked", type=int, default=20_000, help="outbox rows waiting (a week offline)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="spbu-bench-startup-"))
    board = RelayBoardSim(channels=2)
    scanners = [ScannerSim(), ScannerSim()]
    try:
        board.start()
        hq = HeadquartersSim("127.0.0.1", 1, synthetic_registry(1200))  # signs only; never connects
        results: dict[str, dict[str, float]] = {}
        build_s = 0.0
        for system, history in (("empty_journal", 0), ("history_journal", args.transactions)):
            data = work / system
            data.mkdir()
            hq.install_into(data)  # the signed allow-list store and the policy, as after a sync
            if history:
                t0 = time.monotonic()
                fill_history(data / "journal.sqlite", history, args.unacked)
                build_s = time.monotonic() - t0
            config = StationConfig(
                station_id=STATION, zone="WIB", data_dir=data, broker_host="127.0.0.1", broker_port=9,
                trusted_keys={hq.key_id: hq.public_key_hex}, relay_board_port=board.path,
                pumps=(PumpConfig(1, "pertalite", 0, scanners[0].path),
                       PumpConfig(2, "solar", 1, scanners[1].path)))
            path = work / f"{system}.toml"
            path.write_text(render_config(config))
            time_to_ready(path, board)  # warm the page cache: a Pi's SD card after the first boot
            times = [time_to_ready(path, board) for _ in range(args.runs)]
            results[system] = {"ready_s_median": round(statistics.median(times), 4),
                               "ready_s_max": round(max(times), 4),
                               "journal_mb": round((data / "journal.sqlite").stat().st_size / 2**20, 1)}
        history_s = results["history_journal"]["ready_s_median"]
        results["history_journal"]["ratio_to_empty"] = round(
            history_s / results["empty_journal"]["ready_s_median"], 3)
        report = {
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "python": platform.python_version()},
            "params": {"transactions": args.transactions, "unacked": args.unacked, "runs": args.runs,
                       "fixture_build_s": round(build_s, 1)},
            "results": results,
            "targets": {"ready_s_with_history": {"measured": history_s, "target": TARGET_READY_S,
                                                 "met": history_s <= TARGET_READY_S}},
        }
        text = json.dumps(report, indent=2)
        if args.json:
            args.json.write_text(text + "\n")
        print(text)
        return 0
    finally:
        board.close()
        for scanner in scanners:
            scanner.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
