"""National quota across a fleet: the real ledger (hq/ledger_node.py processes on a private
PostgreSQL, durable) and a real broker (mosquitto), and N simulated stations running the
station's own usage sync, decision, journal and outbox code (simulators/fleet.py, several
per process, journals on disk), over one simulated quota day compressed into --day-s
seconds.

    python tests/bench/fleet.py --stations 1000 --vehicles 100000 --json OUT

Vehicles: honest (one fill a day near home), travellers (fills in several areas, within
their quota), abusers hopping stations (a full tank asked at 3-6 stations, same area or
others) and copied QR codes (2-3 copies scanned at different stations at the same moment).
Links: all up, except a stated fraction of stations partitioned from 10:00 to 14:00 (the
station sees its link drop). After the day, a burst of transactions measures the ledger's
ingest rate and CPU.

The simulated stations' journals are real SQLite files, group-committed as at a station; by
default they sit on a tmpfs (/dev/shm): 1,000 stations' fsyncs on one disk measure the
disk, not the design (the SD card's cost is tests/bench/wear.py's). `--journals disk` puts
them in the work directory instead.

The harness reports its own lag (`harness`): how late the scheduled scans and fill ends ran
behind their simulated time, and how long messages queued in a fleet process before a
station took them in. The figures describe the design only while that lag is small
(`targets.harness_keeps_up`); propagation is measured to the moment B counted the fill.

Reported: propagation from a fill closing at A to being counted at B (p50/p99, wall time);
overspend per abuser with links up and with partitions against the stated bound
(docs/national-quota.md): quota x (1 + share x stale stations visited); false refusals of
honest vehicles; bytes per station per day, extrapolated to national volume; ledger
fills/s and CPU-seconds per 1,000 fills.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
import uuid
from bisect import bisect_left
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent import topics  # noqa: E402
from agent.trust import root as trust  # noqa: E402
from agent.trust.signing import save_private_key  # noqa: E402
from hq.ledger_node import MAX_TX_PER_BATCH  # noqa: E402
from hq.usage_feed import UsageFeed  # noqa: E402
from simulators.broker import MosquittoBroker, die_with_parent  # noqa: E402
from simulators.postgres import PostgresServer  # noqa: E402

DAY = "2026-11-30"
BURST_DAY = "2026-12-01"
BASELINE_DAY = "2026-12-02"
LIMITS_ML = {"private_car": 60_000, "goods_4w": 80_000, "public_6w_plus": 200_000}
CATEGORY_WEIGHTS = {"private_car": 70, "goods_4w": 25, "public_6w_plus": 5}
STALE_AFTER_S = 900  # simulated seconds (signed in the policy)
OFFLINE_SHARE = 0.5
PARTITION = (10 * 3600, 14 * 3600)
NATIONAL = {"stations": 7400, "fills_per_day": 5_000_000, "area_size": 8, "tick_s": 60}
HARNESS_LAG_S = 0.5  # wall seconds (p99): a quarter of the 2 s propagation target
TARGETS = {"stations": 1000, "vehicles": 100_000, "propagation_p99_s": 2.0, "bytes_per_station_day": 5_000_000,
           "ledger_fills_per_s": 2000}


def machine() -> dict[str, Any]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version()}


# --- the day's schedule ---------------------------------------------------------------------

def station_ids(count: int, area_size: int) -> list[str]:
    return [f"{31 + (i // area_size) // 1000}.{(i // area_size) % 1000:03d}.{i % area_size + 1:02d}"
            for i in range(count)]


def area(sid: str) -> str:
    return sid.rsplit(".", 1)[0]


def schedule(stations: list[str], vehicles: int, seed: int) -> tuple[dict[int, str], dict[int, str], list[Any]]:
    """(vehicle -> category, vehicle -> kind, events [t_sim, "scan", station, vid, want_ml, kind])."""
    rng = random.Random(seed)
    by_area: dict[str, list[str]] = defaultdict(list)
    for sid in stations:
        by_area[area(sid)].append(sid)
    areas = sorted(by_area)
    categories: dict[int, str] = {}
    kinds: dict[int, str] = {}
    events: list[Any] = []
    while len(categories) < vehicles:
        vid = rng.getrandbits(63) | 1
        if vid in categories:
            continue
        category = rng.choices(list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values()))[0]
        categories[vid] = category
        quota = LIMITS_ML[category]
        r = rng.random()
        home = rng.choice(stations)
        if r < 0.90:
            kinds[vid] = "honest"
            events.append([rng.uniform(1800, 84_600), "scan", home, vid, _ml(quota * rng.uniform(0.3, 1.0)),
                           "honest"])
        elif r < 0.98:
            kinds[vid] = "traveller"
            n = rng.randint(2, 4)
            visit = rng.sample(areas, min(n, len(areas)))
            shares = [rng.random() + 0.2 for _ in visit]
            total = quota * rng.uniform(0.6, 1.0)
            t = rng.uniform(1800, 50_000)
            for a, share in zip(visit, shares, strict=True):
                events.append([t, "scan", rng.choice(by_area[a]), vid, _ml(total * share / sum(shares)), "traveller"])
                t += rng.uniform(1800, 7200)
        elif r < 0.995:
            kinds[vid] = "hopper"
            t = rng.uniform(1800, 70_000)
            here = home
            for _ in range(rng.randint(3, 6)):
                events.append([t, "scan", here, vid, quota, "hopper"])
                same = [s for s in by_area[area(here)] if s != here]
                here = rng.choice(same) if same and rng.random() < 0.5 else rng.choice(stations)
                t += rng.uniform(600, 3600)
        else:
            kinds[vid] = "copy"
            t = rng.uniform(1800, 80_000)
            for sid in rng.sample(stations, min(rng.randint(2, 3), len(stations))):
                events.append([t + rng.uniform(0, 5), "scan", sid, vid, quota, "copy"])
    events.sort(key=lambda e: e[0])
    return categories, kinds, events


def _ml(value: float) -> int:
    return max(1000, int(value) // 100 * 100)


# --- processes -----------------------------------------------------------------------------

def signed_documents(key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    far = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    root = trust.sign(trust.root_body(1, far, {r: [key.public_key()] for r in trust.ALL_ROLES}, {}), [key])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    policy = trust.sign({"_type": "policy", "version": 1, "created": now.isoformat(), "expires": far.isoformat(),
                         "limits_l": {"solar": {c: ml // 1000 for c, ml in LIMITS_ML.items()}},
                         "prices_idr_per_l": {"solar": 6800}, "max_fill_l": 200,
                         "usage_feed": {"stale_after_s": STALE_AFTER_S, "offline_share": OFFLINE_SHARE}}, [key])
    return root, policy


def start_ledgers(count: int, broker: MosquittoBroker, dsn: str, key_path: Path, workdir: Path,
                  tick_s: float, extra: tuple[str, ...] = (), group: str = "fleet",
                  ) -> list[tuple[subprocess.Popen[str], Path]]:
    procs = []
    for i in range(count):
        stats = workdir / f"ledger{i}{'-'.join(extra)}.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "hq.ledger_node", "--host", broker.host, "--port", str(broker.port), "--dsn", dsn,
             "--key", str(key_path), "--name", f"bench-ledger-{i}-{uuid.uuid4().hex[:4]}", "--group", group,
             "--tick", str(tick_s), "--stats", str(stats), *extra,
             "--accept-unsigned"],  # the simulated stations sign nothing: this measures ingest and the feed
            stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=die_with_parent)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"ledger did not start: {line!r}")
        procs.append((proc, stats))
    return procs


def stop_ledgers(procs: list[tuple[subprocess.Popen[str], Path]]) -> list[dict[str, Any]]:
    for proc, _ in procs:
        proc.terminate()
    out = []
    for proc, stats in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.append(json.loads(stats.read_text()) if stats.exists() else {})
    return out


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pg_pids(server: PostgresServer) -> list[int]:
    root = server._proc.pid if server._proc else 0
    found = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def run_workers(args: argparse.Namespace, broker: MosquittoBroker, stations: list[str], categories: dict[int, str],
                events: list[Any], partitions: list[Any], root: bytes, policy: bytes, workdir: Path,
                journal_dir: Path) -> list[Any]:
    groups = [stations[i::args.workers] for i in range(args.workers)]
    procs = []
    for i, group in enumerate(groups):
        mine = set(group)
        spec = {"day": DAY, "day_s": args.day_s, "host": broker.host, "port": broker.port,
                "root_hex": root.hex(), "policy_hex": policy.hex(), "stations": group,
                "categories": {str(k): v for k, v in categories.items()},
                "events": [e for e in events if e[2] in mine], "partitions": partitions,
                "workdir": str(workdir / f"w{i}"), "journal_dir": str(journal_dir / f"w{i}"),
                "sample_mod": args.sample_mod, "sync_wait_s": 120,
                "nozzle_s": args.nozzle_s, "real_flow_ml_per_s": args.copy_flow_l_min * 1000 / 60}
        spec_path = workdir / f"w{i}.spec.json"
        spec_path.write_text(json.dumps(spec))
        procs.append((subprocess.Popen([sys.executable, "-m", "simulators.fleet", str(spec_path),
                                        str(workdir / f"w{i}.out.json")], cwd=ROOT, preexec_fn=die_with_parent),
                      workdir / f"w{i}.out.json"))
    reports = []
    for proc, out in procs:
        proc.wait(timeout=args.day_s + 900)
        if proc.returncode != 0:
            raise RuntimeError(f"fleet worker exited {proc.returncode}")
        reports.append(json.loads(out.read_text()))
    return reports


def burst(broker: MosquittoBroker, dsn: str, stations: list[str], count: int, pids: list[int],
          day: str = BURST_DAY) -> dict[str, Any]:
    """The ledger's ingest: `count` transactions published as fast as the broker takes them."""
    rng = random.Random(99)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"burst-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    payloads = []
    for i in range(count):
        sid = rng.choice(stations)
        ml = rng.randint(5, 60) * 1000
        payloads.append((topics.tx(sid), json.dumps({
            "schema": "spbu.tx/1", "tx_id": f"burst-{day}-{i}", "station": sid,
            "vehicle_id": str(rng.getrandbits(63) | 1),
            "product": "solar", "dispensed_ml": ml, "quota": {"day": day, "limit_ml": 60_000, "before_ml": 0,
                                                              "after_ml": ml}})))
    cpu_before = cpu_s(pids)
    started = time.monotonic()
    for topic, payload in payloads:
        client.publish(topic, payload, qos=1)
    stored = 0
    with psycopg.connect(dsn, autocommit=True) as db:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            row = db.execute("SELECT count(*) FROM tx WHERE day = %s", (day,)).fetchone()
            stored = int(row[0]) if row else 0
            if stored >= count:
                break
            time.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu = cpu_s(pids) - cpu_before
    client.disconnect()
    client.loop_stop()
    return {"fills": count, "stored": stored, "seconds": round(elapsed, 3), "fills_per_s": round(stored / elapsed, 1),
            "cpu_s": round(cpu, 2), "cpu_s_per_1000_fills": round(cpu / max(1, stored) * 1000, 3)}


# --- analysis --------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(log: list[dict[str, Any]], observations: list[Any], cut: set[str],
                stations_by_area: dict[str, list[str]], sample_mod: int) -> dict[str, Any]:
    """From the fill closing at A (its journal commit) to B counting it (merged into B's view,
    what B's next scan reads); `delivered` stops at B's MQTT thread (without the fleet
    process's own queueing, which `harness.inbox_wait_s` reports)."""
    # (vid, A, B) -> [(ml, wall delivered, wall counted)]
    seen: dict[tuple[str, str, str], list[tuple[int, float, float]]] = defaultdict(list)
    for vid, a, ml, b, delivered, counted in observations:
        seen[(vid, a, b)].append((ml, delivered, counted))
    delays: list[float] = []
    delivery: list[float] = []
    missed = 0
    for fill in log:
        if not fill.get("closed") or fill["ml"] <= 0 or (fill["vid"] >> 8) % sample_mod or fill["station"] in cut:
            continue
        a = fill["station"]
        for b in stations_by_area[area(a)]:
            if b == a or b in cut:
                continue
            obs = sorted(seen.get((str(fill["vid"]), a, b), []))
            i = bisect_left(obs, (fill["after"], 0.0, 0.0))
            if i < len(obs):
                delays.append(max(0.0, min(o[2] for o in obs[i:]) - fill["wall"]))
                delivery.append(max(0.0, min(o[1] for o in obs[i:]) - fill["wall"]))
            else:
                missed += 1
    return {"pairs": len(delays), "missed": missed, "p50_s": round(percentile(delays, 0.5), 4),
            "p99_s": round(percentile(delays, 0.99), 4), "max_s": round(max(delays, default=float("nan")), 4),
            "delivered_p50_s": round(percentile(delivery, 0.5), 4),
            "delivered_p99_s": round(percentile(delivery, 0.99), 4)}


def hops(closes: list[dict[str, Any]], quota: int) -> list[tuple[float, int]]:
    """Per fill after the vehicle's first: (hop gap, litres beyond what the quota left).

    The gap runs from the latest close of the vehicle's earlier fills (those scanned before
    this one) to this fill's scan; it is negative when an earlier fill was still flowing (a
    copied QR, not a hop). After a hop slower than propagation every earlier fill could be
    known at the scan, so any litres beyond quota - earlier litres are the design's fault."""
    fills = sorted(closes, key=lambda e: e["scan_wall"])
    out = []
    for i, fill in enumerate(fills):
        earlier = fills[:i]
        if not earlier:
            continue
        gap = fill["scan_wall"] - max(e["wall"] for e in earlier)
        left = max(0, quota - sum(e["ml"] for e in earlier))
        out.append((gap, max(0, fill["ml"] - left)))
    return out


def overspend(log: list[dict[str, Any]], kinds: dict[int, str], categories: dict[int, str],
              p99_s: float) -> dict[str, Any]:
    by_vehicle: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in log:
        by_vehicle[entry["vid"]].append(entry)
    out: dict[str, Any] = {"honest_false_refusals": 0, "honest_capped": 0, "honest_fills": 0}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for vid, entries in by_vehicle.items():
        kind = kinds[vid]
        quota = LIMITS_ML[categories[vid]]
        scans = [e for e in entries if "closed" not in e]
        closes = [e for e in entries if e.get("closed")]
        total = sum(e["ml"] for e in closes)
        if kind in ("honest", "traveller"):
            out["honest_fills"] += len(closes)
            out["honest_false_refusals"] += sum(1 for e in scans if not e["ok"])
            out["honest_capped"] += sum(1 for e in closes if e["ml"] < next(
                (s["want"] for s in scans if s["ok"] and s["station"] == e["station"]), 0))
            continue
        stale = {e["station"] for e in scans if e["ok"] and e["stale"]}
        gaps = hops(closes, quota)
        record = {"vid": vid, "kind": kind, "quota_ml": quota, "total_ml": total,
                  "overspend_ml": max(0, total - quota), "stale_stations": len(stale),
                  "bound_ml": int(quota * OFFLINE_SHARE * len(stale)),
                  "min_hop_s": round(min(g for g, _ in gaps), 3) if gaps else None,
                  "hops": len(gaps), "slow_hops": sum(1 for g, _ in gaps if g > p99_s),
                  "excess_after_slow_hops_ml": sum(x for g, x in gaps if g > p99_s),
                  "excess_after_fast_hops_ml": sum(x for g, x in gaps if g <= p99_s)}
        if stale:
            groups["with_partitions"].append(record)
        elif kind == "copy":
            groups["copies_links_up"].append(record)
        else:
            groups["hoppers_links_up"].append(record)
    for name, records in groups.items():
        out[name] = _group(name, records, p99_s)
    return out


def _group(name: str, records: list[dict[str, Any]], p99_s: float) -> dict[str, Any]:
    # An abuser whose every hop was slower than the measured propagation (or who bought once);
    # copies are simultaneous by design (their own row): the bound's premise does not apply.
    slow = [r for r in records if name == "copies_links_up" or r["min_hop_s"] is None or r["min_hop_s"] > p99_s]
    return {
        "vehicles": len(records),
        "overspend_l_total": round(sum(r["overspend_ml"] for r in records) / 1000, 2),
        "overspend_l_max": round(max((r["overspend_ml"] for r in records), default=0) / 1000, 2),
        "overspend_l_mean": round(statistics.fmean(r["overspend_ml"] for r in records) / 1000, 3) if records else 0,
        "over_bound": sum(1 for r in records if r["overspend_ml"] > r["bound_ml"]),
        "over_bound_slower_than_p99": sum(1 for r in slow if r["overspend_ml"] > r["bound_ml"]),
        "slower_than_p99": len(slow),
        "overspend_l_slower_than_p99": round(sum(r["overspend_ml"] for r in slow) / 1000, 2),
        "hops": sum(r["hops"] for r in records), "hops_slower_than_p99": sum(r["slow_hops"] for r in records),
        "excess_l_after_hops_slower_than_p99": round(sum(r["excess_after_slow_hops_ml"] for r in records) / 1000, 2),
        "excess_l_after_hops_faster_than_p99": round(sum(r["excess_after_fast_hops_ml"] for r in records) / 1000, 2),
        "max_stale_stations": max((r["stale_stations"] for r in records), default=0)}


def volumes(reports: list[dict[str, Any]], ledger_stats: list[dict[str, Any]], fills: int, area_size: int,
            tick_bytes: float) -> dict[str, Any]:
    """Measured per station, then national: each fill reaches the other stations of its area
    (and of the other areas the vehicle visited: the measured ratio r), one message per
    entry (no batching at national per-area rates), plus one signed tick a minute."""
    per = [s for r in reports for s in r["stations"].values()]
    n = len(per)
    feed = sum(s["bytes_in"] - s["bytes_tick"] for s in per)
    entries = sum(s["entries_in"] for s in per)
    msgs = sum(s["msgs_in"] for s in per)
    envelope = tick_bytes + 25  # a batch names its station and day; a tick does not
    entry = max(0.0, (feed - msgs * envelope) / max(1, entries))
    r = entries / max(1, fills * (area_size - 1))
    fills_nat = NATIONAL["fills_per_day"] / NATIONAL["stations"]
    entries_nat = fills_nat * (NATIONAL["area_size"] - 1) * r
    in_nat = entries_nat * (envelope + entry) + 86_400 / NATIONAL["tick_s"] * tick_bytes
    out = statistics.fmean(s["bytes_out"] for s in per)
    out_per_fill = out * n / max(1, fills)
    return {"measured_per_station_day": {"feed_bytes": round(feed / n), "tick_bytes": round(
                statistics.fmean(s["bytes_tick"] for s in per)), "bytes_out": round(out),
                "ack_bytes": round(statistics.fmean(s["bytes_ack"] for s in per)),
                "feed_messages": round(msgs / n, 1), "feed_entries": round(entries / n, 1)},
            "envelope_bytes": round(envelope, 1), "entry_bytes": round(entry, 1),
            "entries_per_fill_per_area_peer": round(r, 3),
            "national": {**NATIONAL, "fills_per_station_day": round(fills_nat, 1),
                         "feed_entries_per_station_day": round(entries_nat), "feed_bytes_in": round(in_nat),
                         "bytes_out_reservations_and_transactions": round(fills_nat * out_per_fill),
                         "bytes_total": round(in_nat + fills_nat * out_per_fill)},
            "ledger_feed_messages": sum(s.get("feed_messages", 0) for s in ledger_stats),
            "ledger_batches": [{k: s.get(k) for k in ("batches", "busy_s", "batch_wait_s", "batch_handle_s")}
                               for s in ledger_stats],
            "ledger_feed_bytes": sum(s.get("feed_bytes", 0) for s in ledger_stats)}


def harness_lag(reports: list[dict[str, Any]], day_s: float) -> dict[str, Any]:
    """The simulator's own lag, per fleet process and worst of them: how late scheduled scans
    and fill ends ran, and how long incoming messages queued before a station took them in."""
    def worst(name: str, field: str) -> float:
        return max(float(r[name][field]) for r in reports)
    lateness = {f: worst("lateness_s", f) for f in ("p50", "p99", "max")}
    inbox = {f: worst("inbox_wait_s", f) for f in ("p50", "p99", "max")}
    hours = [max(r["worst_lateness_by_hour_s"][h] for r in reports) for h in range(25)]
    return {"lateness_s": lateness, "inbox_wait_s": inbox, "worst_lateness_by_sim_hour_s": hours,
            "per_process": [{"lateness_s": r["lateness_s"], "inbox_wait_s": r["inbox_wait_s"],
                             "timeline": r["timeline"], "cpu_s": r["cpu_s"]} for r in reports],
            "keeps_up": lateness["p99"] <= HARNESS_LAG_S and inbox["p99"] <= HARNESS_LAG_S,
            "criterion": f"p99 of both <= {HARNESS_LAG_S} s in every fleet process (day {day_s:g} s)"}


# --- main ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--area-size", type=int, default=8, help="stations per area (the usage feed's scope)")
    parser.add_argument("--nozzle-s", type=float, default=2.0, help="scan to nozzle lifted, wall seconds")
    parser.add_argument("--copy-flow-l-min", type=float, default=40.0,
                        help="flow of copied-QR fills, which run in real time (faster: a quicker, stricter small run)")
    parser.add_argument("--day-s", type=float, default=600.0, help="wall seconds for the simulated day")
    parser.add_argument("--workers", type=int, default=2, help="processes hosting the stations")
    parser.add_argument("--ledgers", type=int, default=2, help="ledger processes (shared subscription)")
    parser.add_argument("--partitioned", type=float, default=0.10, help="fraction of stations cut 10:00-14:00")
    parser.add_argument("--burst", type=int, default=20_000, help="transactions for the ingest measurement")
    parser.add_argument("--baseline-batch", type=int, default=1000,
                        help="the ingest burst again through ledgers taking this many transactions a batch (0: skip)")
    parser.add_argument("--sample-mod", type=int, default=10, help="propagation measured for 1 vehicle in N")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--journals", choices=("tmpfs", "disk"), default="tmpfs",
                        help="where the simulated stations' SQLite journals live: /dev/shm or the work directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) for a look")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="spbu-bench-fleet-"))
    shm = Path("/dev/shm")
    journal_dir = (Path(tempfile.mkdtemp(prefix="spbu-bench-fleet-journals-", dir=shm))
                   if args.journals == "tmpfs" and shm.is_dir() else workdir / "journals")
    stations = station_ids(args.stations, args.area_size)
    categories, kinds, events = schedule(stations, args.vehicles, args.seed)
    rng = random.Random(args.seed + 1)
    cut = set(rng.sample(stations, int(len(stations) * args.partitioned)))
    partitions = [[sid, PARTITION[0], PARTITION[1]] for sid in sorted(cut)]
    key = Ed25519PrivateKey.generate()
    save_private_key(key, workdir / "usage.key")
    root, policy = signed_documents(key)
    # One tick per simulated ~5 minutes from each ledger process (the stale threshold is 15).
    tick_s = max(0.5, args.day_s / 288 * args.ledgers)
    broker = MosquittoBroker(workdir=workdir / "broker")
    (workdir / "broker").mkdir()
    pg = PostgresServer(durable=True)
    ledgers: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        broker.start()
        pg.start()
        dsn = pg.create_database("ledger")
        ledgers = start_ledgers(args.ledgers, broker, dsn, workdir / "usage.key", workdir, tick_s)
        reports = run_workers(args, broker, stations, categories, events, partitions, root, policy, workdir,
                              journal_dir)
        pids = [p.pid for p, _ in ledgers] + pg_pids(pg)
        ingest = {"max_tx_per_batch": MAX_TX_PER_BATCH, **burst(broker, dsn, stations, args.burst, pids)}
        ledger_stats = stop_ledgers(ledgers)
        ledgers = []
        if args.baseline_batch:
            # The same burst through ledgers that take bigger batches: what the cap on
            # transactions per batch costs in throughput, measured in this run.
            # A group of their own: the first ledgers' persistent sessions (5 min) would
            # still be handed their share of the burst.
            ledgers = start_ledgers(args.ledgers, broker, dsn, workdir / "usage.key", workdir, tick_s,
                                    ("--max-tx-per-batch", str(args.baseline_batch)), group="fleet-baseline")
            pids = [p.pid for p, _ in ledgers] + pg_pids(pg)
            ingest["baseline"] = {"max_tx_per_batch": args.baseline_batch,
                                  **burst(broker, dsn, stations, args.burst, pids, BASELINE_DAY)}
            stop_ledgers(ledgers)
        ledgers = []
        with psycopg.connect(dsn, autocommit=True) as db:
            row = db.execute("SELECT count(*) FROM tx WHERE day = %s", (DAY,)).fetchone()
            stored_day = int(row[0]) if row else 0
    finally:
        stop_ledgers(ledgers)
        pg.close()
        broker.close()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(journal_dir, ignore_errors=True)
    log = [e for r in reports for e in r["log"]]
    observations = [o for r in reports for o in r["observations"]]
    by_area: dict[str, list[str]] = defaultdict(list)
    for sid in stations:
        by_area[area(sid)].append(sid)
    prop = propagation(log, observations, cut, by_area, args.sample_mod)
    spend = overspend(log, kinds, categories, prop["p99_s"])
    fills = sum(1 for e in log if e.get("closed"))
    tick_bytes = float(len(UsageFeed([key]).tick()[1]) + len(topics.USAGE_TICK) + 4)
    vol = volumes(reports, ledger_stats, fills, args.area_size, tick_bytes)
    decide_us = [e["decide_us"] for e in log if "decide_us" in e]
    harness = harness_lag(reports, args.day_s)
    results = {
        "national_quota": {
            "fills": fills, "scans": sum(1 for e in log if "closed" not in e), "ledger_stored_day": stored_day,
            "refused_batches": sum(r["refused_batches"] for r in reports),
            "events_left": sum(r["events_left"] for r in reports),
            "day_overrun_s": max(r["overrun_s"] for r in reports),
            "outbox_left": sum(s["outbox_left"] for r in reports for s in r["stations"].values()),
            "harness": harness, "propagation": prop, "overspend": spend, "volume": vol, "ledger_ingest": ingest,
            "decide_us_p99": round(percentile(decide_us, 0.99), 1),
            "kinds": {k: sum(1 for v in kinds.values() if v == k) for k in ("honest", "traveller", "hopper", "copy")},
            "wall_s": round(time.monotonic() - started, 1)},
    }
    up = spend.get("hoppers_links_up", {})
    copies = spend.get("copies_links_up", {})
    parted = spend.get("with_partitions", {})
    national_bytes = vol["national"]["feed_bytes_in"]
    targets = {
        "stations": {"measured": len(stations), "target": TARGETS["stations"], "met": len(stations) >= 1000},
        "vehicles": {"measured": args.vehicles, "target": TARGETS["vehicles"], "met": args.vehicles >= 100_000},
        "propagation_p99_s": {"measured": prop["p99_s"], "target": 2.0, "met": prop["p99_s"] <= 2.0},
        # Litres beyond the quota sold after a hop slower than the measured p99 (hoppers and
        # copies, links up): every earlier fill could be known at that scan.
        "overspend_l_hops_slower_than_p99_links_up": {
            "measured": round(up.get("excess_l_after_hops_slower_than_p99", 0)
                              + copies.get("excess_l_after_hops_slower_than_p99", 0), 2), "target": 0,
            "met": up.get("excess_l_after_hops_slower_than_p99", 0) == 0
            and copies.get("excess_l_after_hops_slower_than_p99", 0) == 0},
        "abusers_over_bound_with_partitions": {"measured": parted.get("over_bound_slower_than_p99", 0), "target": 0,
                                               "met": parted.get("over_bound_slower_than_p99", 0) == 0},
        "honest_false_refusals": {"measured": spend["honest_false_refusals"], "target": 0,
                                  "met": spend["honest_false_refusals"] == 0},
        "feed_bytes_per_station_day_national": {"measured": national_bytes, "target": 5_000_000,
                                                "met": national_bytes <= 5_000_000},
        "ledger_fills_per_s": {"measured": ingest["fills_per_s"], "target": 2000,
                               "met": ingest["fills_per_s"] >= 2000},
        # Not a design target: whether the figures above describe the design at all.
        "harness_keeps_up": {"measured": {"lateness_p99_s": harness["lateness_s"]["p99"],
                                          "inbox_wait_p99_s": harness["inbox_wait_s"]["p99"]},
                             "target": {"lateness_p99_s": HARNESS_LAG_S, "inbox_wait_p99_s": HARNESS_LAG_S},
                             "met": harness["keeps_up"]},
    }
    report = {"machine": machine(),
              "params": {**{k: v for k, v in vars(args).items() if k != "json"}, "day": DAY,
                         "stale_after_s_sim": STALE_AFTER_S, "offline_share": OFFLINE_SHARE,
                         "partition_sim_h": [PARTITION[0] / 3600, PARTITION[1] / 3600], "tick_s": tick_s,
                         "partitioned_stations": len(cut), "journal_dir": str(journal_dir.parent),
                         "journals_on": "tmpfs" if str(journal_dir).startswith("/dev/shm") else "disk"},
              "results": results, "targets": targets}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"targets": targets, "wall_s": results["national_quota"]["wall_s"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
