"""The allow-list store against SQLite and LMDB holding the same data, in one run.

    python tests/bench/allowlist.py --entries 50000000 --json OUT

Random 64-bit ids with a realistic category mix. For each system: bytes per entry on disk,
build time, cold open (file pages evicted from the page cache first, in a fresh process),
memory growth after open and after 100k random lookups (private memory, which is what a
store costs the Pi; file-backed pages are reported too: the kernel drops them at will),
the time those first 100k lookups took from a cold cache, then warm lookup p50/p99 for hits
and misses (20k each, timed on a second pass once their pages are in memory), a 1% delta
(wire size, apply time) and full verification time. SQLite is a WITHOUT ROWID table queried
by a prepared statement; LMDB holds 8-byte big-endian keys with a 1-byte class value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.allowlist import build  # noqa: E402
from agent.allowlist.store import AllowListStore, Entry  # noqa: E402
from agent.durable import atomic_write  # noqa: E402

LOOKUPS = 100_000
TIMED = 20_000
# Category mix of the registry: (class, weight). Suspended ~1%.
MIX: list[tuple[Entry, float]] = [
    (("motorcycle", 1, "active"), 0.297),
    (("private_car", 1, "active"), 0.315),
    (("private_car", 2, "active"), 0.13),
    (("public_passenger_4w", 3, "active"), 0.08),
    (("goods_4w", 2, "active"), 0.12),
    (("public_6w_plus", 2, "active"), 0.048),
    (("motorcycle", 1, "suspended"), 0.003),
    (("private_car", 1, "suspended"), 0.005),
    (("goods_4w", 2, "suspended"), 0.002),
]
TARGETS = {"bytes_per_entry": 6.0, "open_ms": 50.0, "rss_growth_mb": 32.0, "lookup_p99_us": 20.0,
           "delta_apply_s": 10.0, "delta_bytes_per_change": 10.0, "smaller_than_sqlite_x": 3.0}


def registry(n: int, seed: int) -> build.Table:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(1, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True))
    ids = ids[np.concatenate([[True], ids[1:] != ids[:-1]])]  # collisions are astronomically rare
    ids = ids[rng.permutation(ids.size)]
    weights = np.array([w for _, w in MIX])
    cls = rng.choice(len(MIX), size=ids.size, p=weights / weights.sum()).astype(np.uint8)
    return build.canonical(ids, cls, [c for c, _ in MIX])


def one_percent_delta(table: build.Table, seed: int) -> build.Table:
    """New version: 0.4% removed, 0.3% changed class, 0.3% added."""
    rng = np.random.default_rng(seed + 1)
    n = len(table)
    k = max(1, n // 1000)
    pick = rng.choice(n, size=7 * k, replace=False)
    removed, changed = pick[:4 * k], pick[4 * k:]
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    cls = table.cls.copy()
    cls[changed] = (cls[changed] + 1) % len(table.classes)
    added = rng.integers(1, 2**64 - 1, size=3 * k, dtype=np.uint64)
    added = np.sort(added[~build.member(table.ids, added)])
    added = added[np.concatenate([[True], added[1:] != added[:-1]])]
    ids = np.concatenate([table.ids[keep], added])
    new_cls = np.concatenate([cls[keep], rng.integers(0, len(table.classes), size=added.size).astype(np.uint8)])
    return build.canonical(ids, new_cls, list(table.classes))


def evict(path: Path) -> None:
    """Drop a file's clean pages from the page cache: the next open is a cold one."""
    for f in ([path] if path.is_file() else sorted(path.iterdir())):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def rss() -> tuple[float, float]:
    anon = file = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            anon = int(line.split()[1])
        elif line.startswith("RssFile:"):
            file = int(line.split()[1])
    return anon / 1024, file / 1024


# --- the three systems ----------------------------------------------------------------


def build_ours(table: build.Table, path: Path) -> None:
    atomic_write(path, build.encode(table, 1))


def build_sqlite(table: build.Table, path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE vehicles (id INTEGER PRIMARY KEY, category INTEGER NOT NULL,"
               " products INTEGER NOT NULL, status INTEGER NOT NULL) WITHOUT ROWID")
    cat = np.array([["motorcycle", "private_car", "public_passenger_4w", "goods_4w", "public_6w_plus"].index(c[0])
                    for c in table.classes])
    prod = np.array([c[1] for c in table.classes])
    stat = np.array([0 if c[2] == "active" else 1 for c in table.classes])
    signed = table.ids.view(np.int64)
    order = np.argsort(signed, kind="stable")  # insert in key order, as a real import would
    step = 1_000_000
    for start in range(0, len(table), step):
        part = order[start:start + step]
        c = table.cls[part]
        rows = zip(signed[part].tolist(), cat[c].tolist(), prod[c].tolist(), stat[c].tolist(), strict=True)
        db.executemany("INSERT INTO vehicles VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def build_lmdb(table: build.Table, path: Path) -> None:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 40, subdir=True, sync=True)  # virtual: the file grows as used
    keys = table.ids.astype(">u8").tobytes()
    step = 1_000_000
    for start in range(0, len(table), step):
        with env.begin(write=True) as txn:
            cursor = txn.cursor()
            items = ((keys[8 * i:8 * i + 8], bytes((int(c),)))
                     for i, c in zip(range(start, min(len(table), start + step)),
                                     table.cls[start:start + step].tolist(), strict=True))
            cursor.putmulti(items, append=True)
    env.sync(True)
    env.close()


def disk_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.iterdir())


# --- child: open and look up in a fresh process -------------------------------------------


def child(system: str, path: Path, queries: Path) -> None:
    data = np.load(queries)
    hits, misses = data["hits"].tolist(), data["misses"].tolist()
    mixed = data["mixed"].tolist()
    base = rss()
    t0 = time.perf_counter()
    get: Callable[[int], Any]
    if system == "ours":
        store = AllowListStore(path)
        store.lookup_class(hits[0])
        get = store.lookup_class
    elif system == "sqlite":
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        sql = "SELECT category, products, status FROM vehicles WHERE id = ?"
        db.execute(sql, (hits[0] - 2**64 if hits[0] >= 2**63 else hits[0],)).fetchone()

        def get_sqlite(x: int) -> Any:
            return db.execute(sql, (x - 2**64 if x >= 2**63 else x,)).fetchone()
        get = get_sqlite
    else:
        import lmdb

        env = lmdb.open(str(path), readonly=True, lock=False, subdir=True)
        txn = env.begin()
        txn.get(hits[0].to_bytes(8, "big"))

        def get_lmdb(x: int) -> Any:
            return txn.get(x.to_bytes(8, "big"))
        get = get_lmdb
    open_ms = (time.perf_counter() - t0) * 1000
    after_open = rss()
    t0 = time.perf_counter()
    found = sum(get(x) is not None for x in mixed)
    cold_lookups_s = time.perf_counter() - t0
    after_lookups = rss()
    clock = time.perf_counter_ns

    def timed(xs: list[int]) -> list[float]:
        out = []
        for x in xs:
            t = clock()
            get(x)
            out.append((clock() - t) / 1000)
        return out

    for x in hits[:TIMED] + misses[:TIMED]:  # warm: the pages these lookups need are in memory
        get(x)
    hit_us = timed(hits[:TIMED])
    miss_us = timed(misses[:TIMED])
    assert all(get(x) is not None for x in hits[:1000]) and not any(get(x) for x in misses[:1000])
    q = statistics.quantiles
    print(json.dumps({
        "open_ms": round(open_ms, 2),
        "rss_anon_growth_open_mb": round(after_open[0] - base[0], 2),
        "rss_anon_growth_lookups_mb": round(after_lookups[0] - base[0], 2),
        "rss_file_growth_lookups_mb": round(after_lookups[1] - base[1], 2),
        "first_100k_lookups_s": round(cold_lookups_s, 3), "found": found,
        "hit_p50_us": round(statistics.median(hit_us), 2), "hit_p99_us": round(q(hit_us, n=100)[98], 2),
        "miss_p50_us": round(statistics.median(miss_us), 2), "miss_p99_us": round(q(miss_us, n=100)[98], 2),
    }))


def run_child(system: str, path: Path, queries: Path) -> dict[str, Any]:
    evict(path)
    out = subprocess.run([sys.executable, __file__, "--child", system, str(path), str(queries)],
                         check=True, capture_output=True, text=True, timeout=3600)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- deltas and verification ------------------------------------------------------------


def delta_ours(old_path: Path, old: build.Table, new: build.Table, work: Path) -> dict[str, Any]:
    delta = build.diff(old, new, 1, 2)
    wire = build.encode_delta(delta)
    t0 = time.perf_counter()
    base, _ = build.load(old_path)
    applied = build.apply(base, build.decode_delta(wire))
    out = work / "ours-v2.bin"
    atomic_write(out, build.encode(applied, 2))
    apply_s = time.perf_counter() - t0
    assert build.sha256_file(out) == hashlib.sha256(build.encode(new, 2)).hexdigest()
    return {"delta_changes": len(delta), "delta_wire_bytes": len(wire),
            "delta_bytes_per_change": round(len(wire) / len(delta), 2), "delta_apply_s": round(apply_s, 3)}


def delta_sqlite(path: Path, delta: build.Delta) -> dict[str, Any]:
    db = sqlite3.connect(path)
    names = ["motorcycle", "private_car", "public_passenger_4w", "goods_4w", "public_6w_plus"]
    t0 = time.perf_counter()
    rows_up, rows_del = [], []
    for vid, c in zip(delta.ids.tolist(), delta.cls.tolist(), strict=True):
        sid = vid - 2**64 if vid >= 2**63 else vid
        entry = delta.classes[c]
        if entry is None:
            rows_del.append((sid,))
        else:
            rows_up.append((sid, names.index(entry[0]), entry[1], 0 if entry[2] == "active" else 1))
    with db:
        db.executemany("DELETE FROM vehicles WHERE id = ?", rows_del)
        db.executemany("INSERT OR REPLACE INTO vehicles VALUES (?, ?, ?, ?)", rows_up)
    apply_s = time.perf_counter() - t0
    db.close()
    return {"delta_apply_s": round(apply_s, 3)}


def delta_lmdb(path: Path, delta: build.Delta, classes: list[Entry]) -> dict[str, Any]:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 40, subdir=True, sync=True)
    t0 = time.perf_counter()
    with env.begin(write=True) as txn:
        for vid, c in zip(delta.ids.tolist(), delta.cls.tolist(), strict=True):
            entry = delta.classes[c]
            key = vid.to_bytes(8, "big")
            if entry is None:
                txn.delete(key)
            else:
                txn.put(key, bytes((classes.index(entry) if entry in classes else 0,)))
    env.sync(True)
    apply_s = time.perf_counter() - t0
    env.close()
    return {"delta_apply_s": round(apply_s, 3)}


def verify_time(path: Path) -> float:
    t0 = time.perf_counter()
    if path.is_file():
        build.sha256_file(path)
    else:
        for f in sorted(path.iterdir()):
            build.sha256_file(f)
    return round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spbu-bench-allowlist-", dir=args.dir))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    n = args.entries
    t0 = time.perf_counter()
    table = registry(n, args.seed)
    new = one_percent_delta(table, args.seed)
    fixture_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 2)
    hits = table.ids[rng.integers(0, n, size=LOOKUPS)]
    misses = rng.integers(1, 2**64 - 1, size=LOOKUPS, dtype=np.uint64)
    misses = misses[~build.member(table.ids, misses)]
    mixed = np.where(rng.random(LOOKUPS) < 0.5, hits, misses[:LOOKUPS] if misses.size >= LOOKUPS else hits)
    queries = work / "queries.npz"
    np.savez(queries, hits=hits, misses=misses, mixed=mixed)
    paths = {"ours": work / "ours.bin", "sqlite": work / "sqlite.db", "lmdb": work / "lmdb"}
    builders = {"ours": build_ours, "sqlite": build_sqlite, "lmdb": build_lmdb}
    results: dict[str, dict[str, Any]] = {}
    for system, path in paths.items():
        print(f"[{system}] building {n} entries", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        builders[system](table, path)
        build_s = time.perf_counter() - t0
        size = disk_bytes(path)
        results[system] = {"disk_bytes": size, "bytes_per_entry": round(size / n, 3), "build_s": round(build_s, 2)}
        print(f"[{system}] open and lookups", file=sys.stderr, flush=True)
        results[system].update(run_child(system, path, queries))
        results[system]["verify_sha256_s"] = verify_time(path)
    delta = build.diff(table, new, 1, 2)
    print("[deltas] applying 1%", file=sys.stderr, flush=True)
    results["ours"].update(delta_ours(paths["ours"], table, new, work))
    results["sqlite"].update(delta_sqlite(paths["sqlite"], delta))
    results["lmdb"].update(delta_lmdb(paths["lmdb"], delta, list(table.classes)))
    t0 = time.perf_counter()
    build.decode(paths["ours"].read_bytes())
    results["ours"]["verify_structure_s"] = round(time.perf_counter() - t0, 3)
    ours = results["ours"]
    ratio = results["sqlite"]["bytes_per_entry"] / ours["bytes_per_entry"]
    for system in ("sqlite", "lmdb"):
        results[system]["size_ratio_to_ours"] = round(results[system]["bytes_per_entry"] / ours["bytes_per_entry"], 2)
    measured = {
        "bytes_per_entry": ours["bytes_per_entry"], "open_ms": ours["open_ms"],
        "rss_growth_mb": ours["rss_anon_growth_lookups_mb"],
        "lookup_p99_us": max(ours["hit_p99_us"], ours["miss_p99_us"]),
        "delta_apply_s": ours["delta_apply_s"], "delta_bytes_per_change": ours["delta_bytes_per_change"],
        "smaller_than_sqlite_x": round(ratio, 2),
    }
    targets = {name: {"measured": measured[name], "target": target,
                      "met": measured[name] >= target if name == "smaller_than_sqlite_x" else measured[name] <= target}
               for name, target in TARGETS.items()}
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "model": cpu_model()},
        "params": {"entries": n, "seed": args.seed, "lookups": LOOKUPS, "timed_lookups": TIMED,
                   "fixture_s": round(fixture_s, 1)},
        "results": results,
        "targets": targets,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
