"""The allow-list's full re-check after boot (agent/allowlist/verify.py), and what it costs
the scan path while it runs.

    python tests/bench/boot_verify.py --entries 50000000 --days 2 --runs 3 --json OUT

A station repository is built as the sync builds it: a signed snapshot installed, then
`--days` daily 1% deltas installed as runs on it (the layered form). For the plain and the
layered version: the check's time with the file pages in the cache and evicted (cold, as
after a power cut), against the floor for the same bytes in the same run (hashlib's
SHA-256 of the files, and coreutils' `sha256sum`); and the latency of lookups made every
millisecond in the main thread while the check runs in another (as the station loop and the
allow-list worker), against the same lookups with nothing running. Medians of --runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.allowlist import build  # noqa: E402
from agent.allowlist import manifest as manifests  # noqa: E402
from agent.allowlist.repo import AllowListRepo  # noqa: E402
from agent.allowlist.verify import check_current  # noqa: E402
from agent.trust.root import TrustStore  # noqa: E402
from tests.allowlist_fixtures import Headquarters  # noqa: E402
from tests.bench.allowlist import cpu_model, evict, one_percent_delta, registry  # noqa: E402

LOOKUP_EVERY_S = 0.001
TARGETS = {"lookup_p99_during_check_us": 1000.0, "plain_check_vs_sha256": 1.5}


def install(hq: Headquarters, repo: AllowListRepo, trust: TrustStore, table: build.Table) -> int:
    """Sign the next version and install it at the station as the sync would."""
    version = hq.releases.release(table, hq.role_keys["allowlist"], dt.timedelta(days=7), hq.chunk_size)
    raw = hq.manifest(version)
    manifest = manifests.verify(trust, raw, dt.datetime.now(dt.UTC))
    chain = manifest.plan(repo.current_version())
    blobs = hq.chunks(version)
    for blob in [manifest.snapshot] if chain is None else [d.blob for d in chain]:
        for i, digest in enumerate(blob.chunks):
            repo.put_chunk(digest, blob.chunk_length(i), blobs[digest])
    repo.install_fetched(manifest)
    return version


def files(repo: AllowListRepo) -> list[Path]:
    current = (repo.root / "current").resolve()
    return sorted(p for p in current.iterdir() if p.suffix == ".bin")  # what the check reads


def timed_check(repo: AllowListRepo, trust: TrustStore, cold: bool) -> float:
    if cold:
        for path in files(repo):
            evict(path)
    started = time.perf_counter()
    verdict = check_current(repo.root, trust)
    elapsed = time.perf_counter() - started
    assert verdict is not None and verdict.ok, verdict
    return elapsed


def sha256_floor(repo: AllowListRepo) -> tuple[float, float]:
    started = time.perf_counter()
    for path in files(repo):
        build.sha256_file(path)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, files(repo))], check=True, capture_output=True)
    return ours, time.perf_counter() - started


def lookup_latencies(store: Any, ids: np.ndarray, stop: threading.Event | None, limit: int) -> list[float]:
    """One lookup every LOOKUP_EVERY_S until `stop` (or `limit` lookups): each one's latency."""
    out: list[float] = []
    i = 0
    while (stop is None or not stop.is_set()) and len(out) < limit:
        vehicle = int(ids[i % ids.size])
        started = time.perf_counter()
        store.lookup(vehicle)
        out.append(time.perf_counter() - started)
        i += 1
        time.sleep(LOOKUP_EVERY_S)
    return out


def p99_us(values: list[float]) -> float:
    return round(float(np.percentile(np.array(values), 99)) * 1e6, 1) if values else 0.0


def measure(repo: AllowListRepo, trust: TrustStore, ids: np.ndarray, runs: int, idle_lookups: int) -> dict[str, Any]:
    warm = [timed_check(repo, trust, False) for _ in range(runs)]
    cold = [timed_check(repo, trust, True) for _ in range(runs)]
    floor = [sha256_floor(repo) for _ in range(runs)]
    current = repo.open_current()
    assert current is not None
    try:
        idle = lookup_latencies(current, ids, None, idle_lookups)
        busy: list[float] = []
        stop = threading.Event()

        def check() -> None:
            check_current(repo.root, trust)
            stop.set()
        worker = threading.Thread(target=check)
        worker.start()
        busy = lookup_latencies(current, ids, stop, 10**9)
        worker.join()
    finally:
        current.close()
    return {"check_warm_s": round(statistics.median(warm), 4), "check_cold_s": round(statistics.median(cold), 4),
            "sha256_hashlib_s": round(statistics.median(f[0] for f in floor), 4),
            "sha256sum_s": round(statistics.median(f[1] for f in floor), 4),
            "bytes": sum(p.stat().st_size for p in files(repo)), "runs_on_base": len(list(
                (repo.root / "current").resolve().glob("run-*.bin"))),
            "lookup_idle_p99_us": p99_us(idle), "lookup_during_check_p99_us": p99_us(busy),
            "lookups_during_check": len(busy)}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    hq = Headquarters(work / "hq")
    hq.chunk_size = 1 << 20
    trust = TrustStore.from_root_file(hq.root_file(), work / "station" / "trust.json")
    repo = AllowListRepo(work / "station" / "allowlist", trust)
    table = registry(args.entries, args.seed)
    install(hq, repo, trust, table)
    rng = np.random.default_rng(args.seed)
    ids = table.ids[rng.integers(0, len(table), size=20_000)]
    results = {"plain": measure(repo, trust, ids, args.runs, args.idle_lookups)}
    for day in range(args.days):
        table = one_percent_delta(table, args.seed + day)
        install(hq, repo, trust, table)
    if args.days:
        results["layered"] = measure(repo, trust, ids, args.runs, args.idle_lookups)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=2, help="daily 1%% deltas installed as runs (0: plain only)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--idle-lookups", type=int, default=3000, help="lookups timed with nothing running")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spbu-bootverify-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    worst_p99 = max(r["lookup_during_check_p99_us"] for r in results.values())
    plain = results["plain"]
    ratio = round(plain["check_warm_s"] / max(plain["sha256_hashlib_s"], 1e-9), 2)
    report = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_avg": os.getloadavg()[0]},
        "params": {"entries": args.entries, "days": args.days, "runs": args.runs, "seed": args.seed,
                   "idle_lookups": args.idle_lookups},
        "results": results,
        "targets": {
            "lookup_p99_during_check_us": {"measured": worst_p99, "target": TARGETS["lookup_p99_during_check_us"],
                                           "met": worst_p99 <= TARGETS["lookup_p99_during_check_us"]},
            "plain_check_vs_sha256": {"measured": ratio, "target": TARGETS["plain_check_vs_sha256"],
                                      "met": ratio <= TARGETS["plain_check_vs_sha256"]},
        },
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
