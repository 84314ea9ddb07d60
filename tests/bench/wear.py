"""What a station costs a Raspberry Pi's SD card and core, measured on a real agent process.

    nice python tests/bench/wear.py --entries 50000000 --fills 200 --idle-s 120 --days 8 --json OUT

A private mosquitto, the headquarters simulator, a relay board with two dispensers and two
serial scanners on pseudo-terminals, and `python -m agent agent run` as its own process,
started with a small LD_PRELOAD shim (built here with cc) that counts every fsync and
fdatasync and can make each take 20 ms before calling the real one (an SD card's sync).

1. Fills (shim counting only): bytes the agent wrote per fill (/proc/PID/io write_bytes
   less cancelled_write_bytes: pages dirtied, as the card will see them) and fsyncs per
   fill. Baselines in the same run, each in its own process running the journal calls of
   a fill: the journal as it was before (4 KiB pages, every commit synced, SQLite's
   automatic checkpoint) and plain SQLite inserts (one synced row per fill: the floor).
2. Idle: wake-ups per second (voluntary + involuntary context switches of all the
   agent's threads) and CPU seconds per second, over --idle-s.
3. Scan to relay with 20 ms fsyncs: the agent restarted under the delaying shim; fills
   alternate between the pumps and each scan lands while the other pump's fill closes.
4. Allow-list sync (shim counting only): headquarters releases --entries vehicles
   (snapshot) and then a 1% delta over MQTT; the agent's peak anonymous memory during
   each sync (sampled every 20 ms; the mmap'd list's page cache is not counted) and the
   bytes it wrote for the delta.
5. Daily deltas on the station's repository (its own process): --days days of 1% churn
   (tier merges included), then a forced compaction, the cycle's bytes estimated from the
   medians of each kind of day; or, with --cycle, one whole tier cycle (49 days with the
   repository's own tiers, ending in the compaction they make), every day measured and
   the amortised figure their sum. Apply and verify times; lookups on the layered list as
   it stands before the compaction (with --cycle: the most runs the tiers allow).
   Baselines: SQLite and LMDB applying the same delta (their build is not timed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
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

from agent import topics  # noqa: E402
from simulators.relay_board import RelayBoardSim  # noqa: E402
from tests.bench import allowlist as al  # noqa: E402
from tests.bench.fsync_shim import build_shim, read_log  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

TARGETS = {"bytes_per_fill": 24 * 1024, "fsyncs_per_fill": 2.0, "fsyncs_per_fill_checkpoint_cycle": 2.0,
           "bytes_per_fill_checkpoint_cycle": 24 * 1024, "delta_write_x": 5.0, "lookup_p99_us": 20.0,
           "idle_wakeups_per_s": 20.0, "sync_peak_rss_mb": 80.0, "scan_to_relay_p99_ms_20ms_fsync": 25.0}


# --- /proc ------------------------------------------------------------------------------


def written(pid: int | str) -> int:
    """Bytes this process dirtied for storage, less those it truncated away unwritten."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(io["write_bytes"]) - int(io["cancelled_write_bytes"])


def wakeups(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_anon_mb(pid: int | str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's anonymous memory every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss_anon_mb(self.pid))
            except OSError:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(2)
        return round(self.peak, 1)


class Shim:
    def __init__(self, work: Path) -> None:
        self.lib = build_shim(work)
        self.counter = work / "fsync.count"
        self.counter.write_bytes(b"\0" * 4096)

    def env(self, delay_us: int = 0) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.lib), "SPBU_FSYNC_COUNTER": str(self.counter),
                "SPBU_FSYNC_DELAY_US": str(delay_us)}

    def count(self) -> int:
        return int.from_bytes(self.counter.read_bytes()[:8], "little")


def set_priority(tid: int, nice: int, rt_level: int = 10) -> bool:
    """Raised (nice < 0): round-robin real-time class, as a dedicated Pi gives the station its
    cores; else the normal class at `nice`. Raising needs root."""
    try:
        if nice < 0:
            os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(rt_level))
        else:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except OSError:
        return False


def prioritise_self(nice: int) -> bool:
    """Every thread of this process (the board and scanner simulators are threads here)."""
    return all([set_priority(int(t.name), nice) for t in Path("/proc/self/task").iterdir()])


def pct(values: list[float], q: int) -> float:
    return (round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3) if len(values) >= 2
            else round(values[0], 3))


# --- the rig: broker, headquarters, board, scanners, agent ---------------------------------


class TimedBoard(RelayBoardSim):
    """The relay board simulator, stepping every 0.5 ms and noting when each relay closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closes: dict[int, list[float]] = {c: [] for c in range(self.channels)}
        self._was = [False] * self.channels
        self.stalls: list[tuple[float, float]] = []  # (end, seconds) of gaps > 2 ms between steps

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last > 0.002:  # this process (GIL, scheduler) kept the board from stepping
                self.stalls.append((now, now - last))
            last = now
            with self._lock:
                self._flow(self._now())
                with contextlib.suppress(OSError):
                    self._step()
                for ch in range(self.channels):
                    closed = self._relay(ch)
                    if closed and not self._was[ch]:
                        self.closes[ch].append(time.monotonic())
                    self._was[ch] = closed
            self._stop.wait(0.0005)


class Rig:
    def __init__(self, work: Path, shim: Shim, card: bool = False) -> None:
        from tests.reliability.crash_campaign import Campaign

        self.work = work
        self.shim = shim
        # card: every customer pays by card after the fill (EDC terminal simulator on a pty)
        self.campaign = Campaign(work / "station", seed=11, vehicles=400, payments=card, scan_payments=("card",))
        self.campaign.board = TimedBoard(channels=2, flow_lps=10.0, seed=11)
        self.board: TimedBoard = self.campaign.board
        self.agent: subprocess.Popen[bytes] | None = None
        self.tokens = self.campaign.customers.tokens
        self._next = {1: 0, 2: 0}

    def start(self) -> None:
        (self.work / "station").mkdir(parents=True, exist_ok=True)
        self.campaign.start()
        assert self.campaign.hq is not None
        self.hq = self.campaign.hq

    def start_agent(self, delay_us: int = 0, priority: int | None = None) -> int:
        self.stop_agent()
        hellos = self.board.host_hellos()
        env = {**os.environ, **self.shim.env(delay_us)}
        env.pop("SPBU_KILLPOINT", None)
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "agent", "run", "--config", str(self.campaign.config_path)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # logs: journald's, not ours
            preexec_fn=None if priority is None else lambda: set_priority(0, priority))
        if not wait_until(lambda: self.board.host_hellos() > hellos, 20):
            raise RuntimeError("agent did not start")
        time.sleep(1.0)  # its first publishes and the board's first status
        return self.agent.pid

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def close(self) -> None:
        self.stop_agent()
        self.campaign.customers.threads = []  # never started: the campaign's customers are not ours
        self.campaign.close()

    def token(self, pump: int) -> str:
        tokens = self.tokens[pump]
        self._next[pump] += 1
        return tokens[self._next[pump] % len(tokens)]

    def scan(self, pump: int) -> float | None:
        """Scan on a pump; seconds until its relay closed (None: refused)."""
        ch = pump - 1
        before = len(self.board.closes[ch])
        t0 = time.monotonic()
        self.campaign.scanners[pump].scan(self.token(pump))
        if not wait_until(lambda: len(self.board.closes[ch]) > before, 3.0, 0.0005):
            return None
        return self.board.closes[ch][before] - t0

    def finish(self, pump: int) -> None:
        ch = pump - 1
        self.board.hang_nozzle(ch)
        wait_until(lambda: not self.board.relay_closed(ch), 5.0, 0.002)

    def fill(self, pump: int, flow_s: float = 0.2) -> float | None:
        latency = self.scan(pump)
        if latency is None:
            return None
        self.board.lift_nozzle(pump - 1)
        time.sleep(flow_s)
        self.finish(pump)
        time.sleep(0.35)  # the board ends the fill once the flow settled (300 ms): the next customer
        return latency

    def delivered(self) -> int:
        return len(self.hq.transactions())


# --- phases ---------------------------------------------------------------------------------


def phase_fills(rig: Rig, fills: int, gap_s: float = 0.0) -> dict[str, Any]:
    """`gap_s`: an extra pause after each fill; beyond the group-commit wait (0.2 s) each close
    is synced on its own, as at a station where fills come minutes apart (two syncs a
    fill), instead of riding on the next scan's sync. The journal's checkpoints in the
    window are counted from the shim's log (the database file is synced only by them)."""
    log = rig.work / "fills-syncs.log"
    log.unlink(missing_ok=True)
    os.environ["SPBU_FSYNC_LOG"] = str(log)
    try:
        pid = rig.start_agent()
    finally:
        del os.environ["SPBU_FSYNC_LOG"]
    for i in range(4):  # warm-up: first pages of every table, first checkpoint of the day
        rig.fill(1 + i % 2)
    wait_until(lambda: rig.delivered() >= 4, 20)
    time.sleep(1.0)
    start_tx, bytes0, fsync0, t0 = rig.delivered(), written(pid), rig.shim.count(), time.monotonic()
    done = 0
    for i in range(fills):
        done += rig.fill(1 + i % 2) is not None
        time.sleep(gap_s)
    wait_until(lambda: rig.delivered() >= start_tx + done, 60, 0.05)
    time.sleep(1.5)  # acknowledgements applied
    checkpoints = sum(start > t0 and name.endswith("journal.sqlite") for _, start, _, name in read_log(log))
    return {"fills": done, "gap_s": gap_s, "bytes_per_fill": round((written(pid) - bytes0) / max(done, 1)),
            "fsyncs_per_fill": round((rig.shim.count() - fsync0) / max(done, 1), 3),
            "journal_checkpoints_in_window": checkpoints}


def phase_idle(rig: Rig, idle_s: float) -> dict[str, Any]:
    assert rig.agent is not None
    pid = rig.agent.pid
    time.sleep(2.0)
    w0, c0, t0 = wakeups(pid), cpu_s(pid), time.monotonic()
    time.sleep(idle_s)
    w1, c1, t1 = wakeups(pid), cpu_s(pid), time.monotonic()
    threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
    return {"idle_s": round(t1 - t0, 1), "wakeups_per_s": round((w1 - w0) / (t1 - t0), 1),
            "cpu_percent_of_core": round(100 * (c1 - c0) / (t1 - t0), 2), "threads": threads,
            "rss_anon_mb": round(rss_anon_mb(pid), 1)}


def phase_latency(rig: Rig, fills: int, seed: int) -> dict[str, Any]:
    """Scans on one pump while the other pump's fill ends, and (every 4th) with the other
    pump quiet. A scan lands 0-700 ms after the other pump's nozzle was hung: across the
    board's END (300 ms after the flow stops), the close's commit, the group-commit wait
    and its sync (200 ms later, unless a scan's sync carried it), the record's publish
    and its acknowledgement. Every sync the agent makes is logged by the shim (thread,
    file, start, end): the station loop's syncs inside each scan are counted."""
    rng = random.Random(seed)
    # On a Pi the station's processes have its cores to themselves; on this shared machine
    # other jobs would set the tail. As root, agent and simulators run in the real-time
    # round-robin class here (all of them sleep between events: nothing is starved).
    raised = prioritise_self(-10)
    # The relay board's thread is the instrument that sees the relay close: above the rest,
    # so that another thread of this process that is running does not hold it back.
    board_tid = rig.board._thread.native_id
    if raised and board_tid is not None:
        set_priority(board_tid, -10, rt_level=20)
    # The simulators share this process's GIL with the headquarters simulator's MQTT thread:
    # hand it over at a finer grain, so the board notices the relay when it closes.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    log = rig.work / "syncs.log"
    log.unlink(missing_ok=True)
    os.environ["SPBU_FSYNC_LOG"] = str(log)
    try:
        pid = rig.start_agent(delay_us=20_000, priority=-10 if raised else None)
    finally:
        del os.environ["SPBU_FSYNC_LOG"]
    wall = time.time() - time.monotonic()  # the journal's times are wall-clock
    scans: list[dict[str, Any]] = []
    refused = 0
    first = rig.scan(1)
    if first is not None:
        rig.board.lift_nozzle(0)
    pump = 1
    for i in range(fills):
        other = 3 - pump
        time.sleep(0.4)  # flowing
        hang = time.monotonic()
        rig.board.hang_nozzle(pump - 1)
        quiet = i % 4 == 3
        if quiet:  # the other pump's END, close, sync, publish and acknowledgement all done
            time.sleep(1.5)
        elif i % 4 == 2:
            time.sleep(rng.uniform(0.0, 0.7))
        else:  # aimed at the close itself: the board's END comes 300 ms after the flow stops
            time.sleep(rng.uniform(0.27, 0.34))
        ch = other - 1
        before = len(rig.board.closes[ch])
        t0 = time.monotonic()
        rig.campaign.scanners[other].scan(rig.token(other))
        if not wait_until(lambda: len(rig.board.closes[ch]) > before, 3.0, 0.0005):  # noqa: B023
            refused += 1
        else:
            scans.append({"t0": t0, "t1": rig.board.closes[ch][before], "hang": hang, "quiet": quiet,
                          "other": pump})
            rig.board.lift_nozzle(other - 1)
        channel = pump - 1
        wait_until(lambda: not rig.board.relay_closed(channel), 5.0, 0.002)  # noqa: B023
        pump = other
    rig.finish(pump)
    rig.stop_agent()
    prioritise_self(10)
    sys.setswitchinterval(switch)
    return latency_report(scans, refused, read_log(log), pid, closes_of(rig, wall), raised, rig.board.stalls)


def card_payments(rig: Rig) -> dict[str, Any]:
    """What the card customers' payments did: the terminal's approved sales against the
    fills, and payments the journal still holds open (there should be none)."""
    import sqlite3

    from hal import ecr_proto as ecr

    assert rig.campaign.edc is not None
    sales = [r for r in rig.campaign.edc.ledger() if r["type"] == ecr.SALE and r["response"] == ecr.APPROVED]
    db = sqlite3.connect(f"file:{rig.campaign.journal}?mode=ro", uri=True, timeout=5)
    try:
        fills = int(db.execute("SELECT COUNT(*) FROM sessions WHERE dispensed_ml > 0").fetchone()[0])
        open_ = int(db.execute("SELECT COUNT(*) FROM payments WHERE state != 'done'").fetchone()[0])
        paid = int(db.execute("SELECT COUNT(*) FROM payments").fetchone()[0])
    finally:
        db.close()
    return {"fills_with_fuel": fills, "payments": paid, "approved_card_sales": len(sales),
            "payments_unsettled": open_}


def closes_of(rig: Rig, wall: float) -> dict[int, list[float]]:
    """Monotonic times of the closes' commits, per pump, from the journal."""
    import sqlite3

    db = sqlite3.connect(f"file:{rig.campaign.journal}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT pump, closed_at FROM sessions WHERE closed_at IS NOT NULL").fetchall()
    finally:
        db.close()
    out: dict[int, list[float]] = {}
    for pump, closed_at in rows:
        out.setdefault(int(pump), []).append(float(closed_at) - wall)
    return out


def latency_report(scans: list[dict[str, Any]], refused: int, syncs: list[tuple[int, float, float, str]],
                   pid: int, closes: dict[int, list[float]], raised: bool,
                   stalls: list[tuple[float, float]]) -> dict[str, Any]:
    """Each scan: its latency, the station loop's syncs inside it, whether the other pump's
    close (its commit, or a sync of the close by the group-commit thread) fell inside it,
    and the longest stall of the board simulator's own loop inside it (this process held
    it back: time the measuring side adds). Figures for all scans, for those overlapping a
    close, for the quiet ones."""
    loop_wal = [(a, b) for tid, a, b, name in syncs if tid == pid and name.endswith("-wal")]
    thread_wal = [(a, b) for tid, a, b, name in syncs if tid != pid and name.endswith("-wal")]
    rows = []
    for s in scans:
        t0, t1 = s["t0"], s["t1"]
        close = [c for c in closes.get(s["other"], []) if s["hang"] <= c <= s["hang"] + 3.0]
        overlap = any(t0 - 0.025 <= c <= t1 for c in close) or any(a < t1 and b > t0 for a, b in thread_wal)
        stall = max((g for end, g in stalls if t0 < end <= t1 + 0.001), default=0.0)
        rows.append({"ms": (t1 - t0) * 1000, "loop_syncs": sum(t0 <= a < t1 for a, _ in loop_wal),
                     "board_stall_ms": round(stall * 1000, 1),
                     "overlap": overlap, "quiet": s["quiet"],
                     "close_after_ms": round((close[0] - t0) * 1000, 1) if close else None})

    def stats(sel: list[dict[str, Any]]) -> dict[str, Any]:
        ms = [r["ms"] for r in sel]
        if not ms:
            return {"scans": 0}
        return {"scans": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": round(max(ms), 3)}

    worst = sorted(rows, key=lambda r: -r["ms"])[:8]
    return {"scans": len(rows), "refused": refused, **stats(rows), "realtime_class": raised,
            "during_other_close": stats([r for r in rows if r["overlap"]]),
            "other_pump_quiet": stats([r for r in rows if r["quiet"]]),
            "loop_syncs_per_scan": {str(k): sum(r["loop_syncs"] == k for r in rows)
                                    for k in sorted({r["loop_syncs"] for r in rows})},
            "syncs_by_thread": {"station_loop": len(loop_wal), "group_commit_thread": len(thread_wal)},
            "journal_checkpoints": sum(name.endswith("journal.sqlite") and start > scans[0]["t0"]
                                       for _, start, _, name in syncs) if scans else 0,
            "board_stalls_over_2ms_in_scans": sum(r["board_stall_ms"] > 2 for r in rows),
            "worst": [{"ms": round(r["ms"], 1), "loop_syncs": r["loop_syncs"], "overlap": r["overlap"],
                       "board_stall_ms": r["board_stall_ms"],
                       "close_after_ms": r["close_after_ms"]} for r in worst]}


def publish_release(rig: Rig, table: Any) -> int:
    hq = rig.hq
    version = hq.releases.release(table, [hq.key], hq.validity, hq.chunk_size)
    chunks = hq.releases.blobs(version)
    for digest, data in chunks.items():
        if digest not in hq._published_chunks:
            hq.client.publish(topics.allowlist_chunk(digest), data, qos=1, retain=True).wait_for_publish(60)
    hq._published_chunks = set(chunks)
    manifest = hq.releases.manifest_path(version).read_bytes()
    hq.client.publish(topics.ALLOWLIST_MANIFEST, manifest, qos=1, retain=True).wait_for_publish(60)
    return version


def installed(rig: Rig) -> int:
    try:
        return int(os.readlink(rig.work / "station" / "data" / "allowlist" / "current")[1:])
    except (OSError, ValueError):
        return 0


def phase_sync(rig: Rig, entries: int, seed: int) -> dict[str, Any]:
    pid = rig.start_agent()
    table = al.registry(entries, seed)
    out: dict[str, Any] = {}
    for kind, tab in (("snapshot", table), ("delta_1pct", None)):
        if tab is None:
            tab = al.one_percent_delta(table, seed)
        t0 = time.monotonic()
        version = publish_release(rig, tab)
        publish_s = time.monotonic() - t0
        bytes0 = written(pid)
        peak = PeakRss(pid)
        t0 = time.monotonic()
        ok = wait_until(lambda: installed(rig) >= version, 3600, 0.05)  # noqa: B023
        out[kind] = {"installed": ok, "sync_s": round(time.monotonic() - t0, 2), "publish_s": round(publish_s, 1),
                     "peak_rss_anon_mb": peak.stop(), "bytes_written": written(pid) - bytes0}
        if kind == "delta_1pct":
            out[kind]["delta_wire_bytes"] = rig.hq.releases.delta_path(version).stat().st_size
    out["rss_anon_mb_after"] = round(rss_anon_mb(pid), 1)
    rig.stop_agent()
    return out


# --- daily deltas on the station's repository (child process) -------------------------------


def days_child(work: Path, days: int, entries: int, seed: int, cycle: bool = False,
               hq_dir: Path | None = None) -> dict[str, Any]:
    """Headquarters releases day after day; the station repo installs each (as the sync's
    worker does). Only the install is measured: /proc/thread-self/io of this thread.

    `cycle`: one whole tier cycle with the repository's own tiers ((TIER0 + 1) x (TIER1 + 1)
    days, its last day the compaction the tiers make by themselves); lookups just before
    that day, when the most runs stand in front of the base. Otherwise `days` daily deltas
    and then a compaction forced by setting the tiers to 0. Headquarters' releases (not
    measured) go to `hq_dir`, on tmpfs when there is one: a 50M snapshot a day is not the
    station's wear and would only load the shared disk."""
    import resource

    from agent.allowlist.repo import AllowListRepo
    from agent.trust.root import TrustStore
    from hq.releases import Releases
    from tests.allowlist_fixtures import Headquarters

    hq = Headquarters(work / "hq", chunk_size=256 * 1024)
    releases = Releases((hq_dir or work / "hq") / "rel")
    trust = TrustStore.from_root_file(hq.root_file(), work / "st" / "trust.json")
    repo = AllowListRepo(work / "st" / "allowlist", trust)
    tiers = {"tier0": repo.tier0, "tier1": repo.tier1}  # the repository's own (a forced compaction zeroes them)
    last = (repo.tier0 + 1) * (repo.tier1 + 1) if cycle else days + 1
    table = previous = al.registry(entries, seed)
    rows: list[dict[str, Any]] = []
    lookup: dict[str, Any] = {}
    for day in range(last + 1):
        if day == last and not cycle:
            repo.tier0 = repo.tier1 = 0  # the forced compaction, measured once
        t0 = time.perf_counter()
        if day:
            table = al.one_percent_delta(table, seed + day)
        manifest, blobs, needed = release_day(releases, hq, trust, repo, table)
        hq_s = time.perf_counter() - t0
        if day == last:  # the runs as they stand before the compaction
            lookup = lookups_on(repo, previous, samples=min(100_000, max(2_000, entries // 10)))
        rows.append({"day": day, **install_day(repo, manifest, blobs, needed), "hq_s": round(hq_s, 2),
                     "delta_bytes": delta_size(releases, manifest.version) if day else 0})
        for old in releases.versions()[:-2]:
            releases.delta_path(old).unlink(missing_ok=True)
        previous = table
    maxrss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"rows": rows, "lookup": lookup, "cycle": cycle, **tiers, "peak_rss_mb_bench_process": maxrss_mb}


def release_day(releases: Any, hq: Any, trust: Any, repo: Any, table: Any) -> tuple[Any, dict[str, bytes], set[str]]:
    """Headquarters' release of `table` and what the station's sync would fetch for it."""
    import datetime as dt

    from agent.allowlist import manifest as manifests

    version = releases.release(table, hq.role_keys["allowlist"], dt.timedelta(days=30))
    raw = releases.manifest_path(version).read_bytes()
    manifest = manifests.verify(trust, raw, dt.datetime.now(dt.UTC))
    blobs = releases.blobs(version)
    chain = manifest.plan(repo.current_version())  # what the sync fetches: the deltas, or the snapshot
    needed = {d for ref in chain for d in ref.blob.chunks} if chain else set(manifest.snapshot.chunks)
    return manifest, blobs, needed


def install_day(repo: Any, manifest: Any, blobs: dict[str, bytes], needed: set[str]) -> dict[str, Any]:
    """The station's part, measured: chunks as the sync writes them, then the install."""
    before = written("thread-self")
    for digest in needed:
        repo.put_chunk(digest, len(blobs[digest]), blobs[digest])  # as the sync writes them (no fsync)
    t0 = time.perf_counter()
    repo.install_fetched(manifest)
    seconds = time.perf_counter() - t0
    layers_file = repo.root / "current" / "layers.json"
    levels = [r["level"] for r in json.loads(layers_file.read_bytes())["runs"]] if layers_file.exists() else []
    return {"version": manifest.version, "written": written("thread-self") - before,
            "install_s": round(seconds, 3), **repo.last_install, "runs": len(levels), "level1": levels.count(1)}


def delta_size(releases: Any, version: int) -> int:
    delta = releases.delta_path(version)
    return delta.stat().st_size if delta.exists() else 0


def lookups_on(repo: Any, table: Any, samples: int = 100_000) -> dict[str, Any]:
    """Warm lookups on the layered list as it stands (its runs in front of the base) and on
    the base alone (a plain store), in the same process and run: `samples` hits and as many
    misses, shuffled, each timed on its own, after a warm-up pass over the same ids (pages
    and filters in the page cache), with the garbage collector off during the timing."""
    import gc

    from agent.allowlist.layers import LayeredStore, Layers

    current = repo.root / "current"
    layers = Layers.read(current)
    if layers is None:
        return {}
    store = LayeredStore.open(current, layers)
    rng = np.random.default_rng(3)
    hits = table.ids[rng.integers(0, len(table), size=samples)]
    misses = rng.integers(1, 2**64 - 1, size=samples, dtype=np.uint64)
    ids = np.concatenate([hits, misses])
    rng.shuffle(ids)
    order = ids.tolist()

    def timed(get: Any) -> list[float]:
        for x in order:
            get(x)
        clock = time.perf_counter_ns
        out = [0.0] * len(order)
        gc.disable()
        try:
            for k, x in enumerate(order):
                t = clock()
                get(x)
                out[k] = clock() - t
        finally:
            gc.enable()
        return [v / 1000 for v in out]

    def figures(us: list[float]) -> dict[str, float]:
        q = statistics.quantiles(us, n=1000, method="inclusive")
        return {"p50_us": round(q[499], 2), "p99_us": round(q[989], 2), "p999_us": round(q[998], 2)}

    layered, base = timed(store.lookup_class), timed(store.base.lookup_class)
    layered_again = timed(store.lookup_class)  # once more after the base: drift shows here
    assert all(store.lookup_class(x) is not None for x in hits[:2000].tolist())
    runs = len(store._runs)
    store.close()
    return {"runs": runs, "lookups": len(order), **figures(layered), "again": figures(layered_again),
            "base_alone": figures(base),
            "p99_ratio_to_base": round(figures(layered)["p99_us"] / max(figures(base)["p99_us"], 1e-9), 2)}


def phase_days(work: Path, days: int, entries: int, seed: int, cycle: bool = False) -> dict[str, Any]:
    shm = Path("/dev/shm")
    hq_dir = Path(tempfile.mkdtemp(prefix="spbu-bench-hq-", dir=shm if shm.is_dir() else work.parent))
    try:
        out = subprocess.run([sys.executable, __file__, "--days-child", str(work), str(days), str(entries), str(seed),
                              "cycle" if cycle else "days", str(hq_dir)],
                             check=True, capture_output=True, text=True, cwd=ROOT, timeout=7200)
    finally:
        shutil.rmtree(hq_dir, ignore_errors=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["summary"] = days_summary(result)
    return result


def days_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Per kind of day: plain (a run added), compose (daily runs -> a level-1 run), the
    compaction (last row). Over a measured cycle the amortised figure is the sum of every
    day's bytes over the sum of the deltas; otherwise the cycle is estimated from the
    medians of the kinds seen (a kind not seen counted as a plain day)."""
    rows = result["rows"]
    daily = [r for r in rows[1:-1] if r["runs"]]
    composes = [r for prev, r in itertools.pairwise(rows[:-1]) if r["level1"] > prev["level1"]]
    plains = [r for r in daily if r not in composes]
    compaction = rows[-1]
    tier0, tier1 = result["tier0"], result["tier1"]
    delta = statistics.median(r["delta_bytes"] for r in rows[1:])
    plain = statistics.median(r["written"] for r in plains) if plains else 0
    compose = statistics.median(r["written"] for r in composes) if composes else plain
    # One cycle: every (TIER0 + 1)-th day composes the daily runs into a level-1 run; the
    # (TIER1 + 1)-th such day compacts everything into a new base.
    cycle_days = (tier0 + 1) * (tier1 + 1)
    measured = bool(result.get("cycle")) and len(rows) - 1 == cycle_days and compaction.get("compacted") is True
    if measured:
        total, total_delta = sum(r["written"] for r in rows[1:]), sum(r["delta_bytes"] for r in rows[1:])
        amortised, x_delta = total / cycle_days, total / total_delta
    else:
        amortised = ((cycle_days - tier1 - 1) * plain + tier1 * compose + compaction["written"]) / cycle_days
        x_delta = amortised / delta if delta else 0.0
    return {
        "delta_bytes": delta, "daily_written": plain, "compose_day_written": compose,
        "compaction_written": compaction["written"], "compaction_s": compaction["install_s"],
        "cycle_days": cycle_days, "cycle_measured": measured, "days_run": len(rows) - 1,
        "amortised_written_per_day": round(amortised), "amortised_x_delta": round(x_delta, 2) if delta else None,
        "daily_x_delta": round(plain / delta, 2) if delta else None,
        "by_kind": {kind: kind_figures(sel) for kind, sel in
                    (("plain", plains), ("compose", composes), ("compaction", [compaction]))},
        "daily_install_s": statistics.median(r["install_s"] for r in daily) if daily else None,
        "daily_apply_s": statistics.median(r.get("apply_s", r["install_s"]) for r in daily) if daily else None,
        "daily_verify_s": statistics.median(r.get("verify_s", 0.0) for r in daily) if daily else None,
    }


def kind_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Days of one kind: how many, bytes written (total, median, range) against their deltas."""
    if not rows:
        return {"days": 0}
    written_ = [r["written"] for r in rows]
    deltas = sum(r["delta_bytes"] for r in rows)
    return {"days": len(rows), "written_total": sum(written_), "written_median": statistics.median(written_),
            "written_min": min(written_), "written_max": max(written_),
            "x_delta": round(sum(written_) / deltas, 2) if deltas else None,
            "install_s_median": statistics.median(r["install_s"] for r in rows),
            "verify_s_median": statistics.median(r.get("verify_s", 0.0) for r in rows)}


def baseline_deltas(work: Path, entries: int, seed: int) -> dict[str, Any]:
    """SQLite and LMDB holding the same list apply the same 1% delta: time and bytes."""
    from agent.allowlist import build

    table = al.registry(entries, seed)
    new = al.one_percent_delta(table, seed + 1)
    delta = build.diff(table, new, 1, 2)
    out: dict[str, Any] = {"delta_wire_bytes": len(build.encode_delta(delta))}
    for name in ("sqlite", "lmdb"):
        path = work / f"base-{name}"
        (al.build_sqlite if name == "sqlite" else al.build_lmdb)(table, path)
        os.sync()
        before = written("thread-self")
        result = al.delta_sqlite(path, delta) if name == "sqlite" else al.delta_lmdb(path, delta, list(table.classes))
        out[name] = {"apply_s": result["delta_apply_s"], "written": written("thread-self") - before}
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    return out


# --- the journal alone, before and after (child processes) ----------------------------------


def journal_child(mode: str, path: Path, fills: int) -> dict[str, Any]:
    from agent.journal import Journal

    record = {"schema": "spbu.tx/1", "pad": "x" * 650}
    if mode == "plain_sqlite_insert":
        import sqlite3

        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE tx (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")

        def fill(i: int) -> None:
            db.execute("INSERT INTO tx (body) VALUES (?)", (json.dumps(record).encode(),))
    else:
        journal = Journal(path, group_commit=True) if mode == "ours" else _before(path)

        def fill(i: int) -> None:
            s = journal.open_session("34.401.01", 1 + i % 2, random.getrandbits(63) or 1, "B 1234 XY", "pertalite",
                                     "2026-11-30", 60000, 0, 20000, 10000)
            if mode != "ours":  # the journal before marked the session fuelling (a commit of its own)
                with journal._tx(durable=False) as db:
                    db.execute("UPDATE sessions SET state='fuelling' WHERE seq=?", (s.seq,))
            journal.close_session(s, 12000, 120000, "nozzle_hung", (s.tx_id, "spbu/v1/x/tx", record),
                                  {"last_trusted_day": "2026-11-30", "wall_floor": str(time.time())})
            journal.wait_durable(2)
            journal.outbox_ack([s.tx_id])
    for i in range(50):
        fill(i)
    cycle = mode == "ours" and fills >= 100  # (a tiny run measures its fills only)
    if cycle:
        # Its checkpoints come every CHECKPOINT_COMMITS commits (about 1,000 fills): measured
        # from one to the next, so a whole checkpoint is in the figure, once. Each close is
        # synced on its own (group_s 0: no scan follows soon, as at a quiet station).
        journal.syncer.group_s = 0.0
        at = journal.syncer.checkpoints
        while journal.syncer.checkpoints == at:
            fill(0)
        time.sleep(0.5)  # its WAL restart
    os.sync()
    from_counter = Path(os.environ.get("SPBU_FSYNC_COUNTER", "/nonexistent"))
    count0 = int.from_bytes(from_counter.read_bytes()[:8], "little")
    before = written("self")
    done = 0
    at = journal.syncer.checkpoints if cycle else 0
    while (journal.syncer.checkpoints == at) if cycle else done < fills:
        fill(done)
        done += 1
    if cycle:
        time.sleep(0.5)  # the checkpoint that ends the cycle, whole
    return {"fills": done, "bytes_per_fill": round((written("self") - before) / done),
            "fsyncs_per_fill": round((int.from_bytes(from_counter.read_bytes()[:8], "little") - count0) / done, 3),
            "checkpoint_cycle": cycle}


def _before(path: Path) -> Any:
    """The journal as it was: 4 KiB pages, every commit synced, SQLite's own checkpoints."""
    import sqlite3
    from contextlib import contextmanager

    from agent.journal import Journal

    class Before(Journal):
        def __init__(self, p: Path) -> None:
            db = sqlite3.connect(str(p))
            db.execute("PRAGMA page_size=4096")
            db.execute("PRAGMA journal_mode=WAL")
            db.close()
            super().__init__(p)
            self._db.execute("PRAGMA wal_autocheckpoint=1000")

        @contextmanager
        def _tx(self, durable: bool = True, outbox_from: list[int] | None = None, urgent: bool = False) -> Any:
            with super()._tx(True, None) as db:
                yield db

    return Before(path)


def phase_journal(shim: Shim, work: Path, fills: int) -> dict[str, Any]:
    out = {}
    for mode in ("ours", "before_issue_19", "plain_sqlite_insert"):
        shim.counter.write_bytes(b"\0" * 4096)
        path = work / f"journal-{mode}.sqlite"
        done = subprocess.run([sys.executable, __file__, "--journal-child", mode, str(path), str(fills)],
                              check=True, capture_output=True, text=True, cwd=ROOT, timeout=600,
                              env={**os.environ, **shim.env()})
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--journal-child":
        print(json.dumps(journal_child(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
        return 0
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--days-child":
        print(json.dumps(days_child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                    sys.argv[6] == "cycle", Path(sys.argv[7]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000, help="allow-list size for the sync and deltas")
    parser.add_argument("--fills", type=int, default=100)
    parser.add_argument("--fill-gap-s", type=float, default=0.0,
                        help="pause after each fill (0.3: each close synced alone)")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--latency-fills", type=int, default=100)
    parser.add_argument("--card", action="store_true",
                        help="the agent's customers pay by card after the fill (EDC terminal simulator)")
    parser.add_argument("--days", type=int, default=8, help="daily deltas before the forced compaction")
    parser.add_argument("--cycle", action="store_true",
                        help="days phase: one whole tier cycle with the repository's own tiers (49 days; "
                             "--days is then not used), every day measured, lookups before its compaction")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--phases", default="journal,fills,idle,latency,sync,days,baselines",
                        help="which phases to run (comma-separated; the report's targets cover those run)")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="spbu-bench-wear-", dir=args.dir))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def step(name: str, results: dict[str, Any] | None = None) -> None:
    if results:
        print(f"[wear] {json.dumps(results)[-600:]}", file=sys.stderr, flush=True)
    print(f"[wear] {name}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, work: Path) -> int:
    phases = set(args.phases.split(","))
    shim = Shim(work)
    results: dict[str, Any] = {}
    if "journal" in phases:
        step("journal alone: ours, before, plain inserts")
        results["journal"] = phase_journal(shim, work, args.fills)
    if phases & {"fills", "idle", "latency", "sync"}:
        rig = Rig(work, shim, card=args.card)
        try:
            rig.start()
            if "fills" in phases:
                step(f"agent: {args.fills} fills", results)
                results["agent_fills"] = phase_fills(rig, args.fills, args.fill_gap_s)
            if "idle" in phases:
                step(f"agent: idle {args.idle_s} s", results)
                if rig.agent is None:
                    rig.start_agent()
                results["agent_idle"] = phase_idle(rig, args.idle_s)
            if "latency" in phases:
                step(f"agent with 20 ms fsyncs: {args.latency_fills} scans while the other pump closes", results)
                results["agent_scan_to_relay_20ms_fsync"] = phase_latency(rig, args.latency_fills, args.seed)
                if args.card:
                    results["agent_scan_to_relay_20ms_fsync"]["card_payments"] = card_payments(rig)
            if "sync" in phases:
                step(f"agent: allow-list sync of {args.entries} entries, then a 1% delta", results)
                results["agent_allowlist_sync"] = phase_sync(rig, args.entries, args.seed)
        finally:
            rig.close()
    if "days" in phases:
        step(f"station repository: {'a whole tier cycle' if args.cycle else f'{args.days} daily deltas'} "
             "and a compaction", results)
        results["daily_deltas"] = phase_days(work / "days", args.days, args.entries, args.seed, args.cycle)
    if "baselines" in phases:
        step("baselines: SQLite and LMDB applying the same delta", results)
        results["baseline_delta"] = baseline_deltas(work, args.entries, args.seed)
    report = {"machine": {"cpu": al.cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
              "params": vars(args) | {"dir": None, "json": None}, "results": results,
              "targets": targets(results)}
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """The targets of the phases that ran."""
    measured: dict[str, Any] = {}
    if "agent_fills" in r:
        measured["bytes_per_fill"] = r["agent_fills"]["bytes_per_fill"]
        measured["fsyncs_per_fill"] = r["agent_fills"]["fsyncs_per_fill"]
    if "journal" in r and r["journal"]["ours"].get("checkpoint_cycle"):
        # the agent's window may hold no checkpoint (one per ~1,000 fills): this one holds one, whole
        measured["fsyncs_per_fill_checkpoint_cycle"] = r["journal"]["ours"]["fsyncs_per_fill"]
        measured["bytes_per_fill_checkpoint_cycle"] = r["journal"]["ours"]["bytes_per_fill"]
    if "daily_deltas" in r:
        measured["delta_write_x"] = r["daily_deltas"]["summary"]["amortised_x_delta"]
        measured["lookup_p99_us"] = r["daily_deltas"]["lookup"].get("p99_us")
    if "agent_idle" in r:
        measured["idle_wakeups_per_s"] = r["agent_idle"]["wakeups_per_s"]
    if "agent_allowlist_sync" in r:
        sync = r["agent_allowlist_sync"]
        measured["sync_peak_rss_mb"] = max(sync["snapshot"]["peak_rss_anon_mb"], sync["delta_1pct"]["peak_rss_anon_mb"])
    if "agent_scan_to_relay_20ms_fsync" in r:
        measured["scan_to_relay_p99_ms_20ms_fsync"] = r["agent_scan_to_relay_20ms_fsync"]["p99_ms"]
    out = {name: {"measured": measured[name], "target": target,
                  "met": measured[name] is not None and measured[name] <= target}
           for name, target in TARGETS.items() if name in measured}
    if "daily_deltas" in r and "baseline_delta" in r:
        apply_s = r["daily_deltas"]["summary"]["daily_apply_s"]
        faster = min(r["baseline_delta"]["sqlite"]["apply_s"], r["baseline_delta"]["lmdb"]["apply_s"])
        out["delta_apply_faster_than_sqlite_and_lmdb_s"] = {"measured": apply_s, "target": faster,
                                                           "met": apply_s is not None and apply_s < faster}
    return out


if __name__ == "__main__":
    sys.exit(main())
