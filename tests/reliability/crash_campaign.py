"""Crash campaign: SIGKILL the agent at many instants across the whole lifecycle and check,
after every kill, what the principles promise.

    python tests/reliability/crash_campaign.py --kills N [--seed S] [--json OUT]

The agent runs as a real process (`python -m agent agent run`) against a private
mosquitto, a relay board with dispensers and serial scanners on pseudo-terminals, and a
headquarters simulator; customers scan, lift and hang nozzles all the time. Half of the
kills land at random instants; the other half at named points between two steps
(agent/killpoints.py), cycling through all of them. After each kill:

  - every relay opens by itself within the board's heartbeat timeout;
  - the restarted agent closes every session the crash left open and re-authorises none;
  - dispensers' totalisers = litres in the journal, per pump;
  - quota used = litres dispensed, per vehicle, product and day; nothing left reserved.
At the end every journaled transaction must be at headquarters exactly once.

With --pump dart --nozzles 2 every DART pump carries two grades: customers scan and then
lift either nozzle (or lift first and scan), wrong grades included, and after each kill the
pumps' own totals per nozzle must equal the litres journaled for that pump and grade.

With --power-cut each kill is a power cut of the Pi for the journal: the agent runs under
an fsync shim that copies each journal file as its last sync left it, and after the kill
every journal file goes back to that copy (writes not yet synced are lost; the devices,
with their own power, keep what they did). Then, besides the above, headquarters must hold
no record the station lost, and with --payments the terminal no charge the journal lost.

With --payments an EDC terminal simulator joins: scans are paid by card, prepay and
postpay in turn, and the named kills land around payment steps (PAYMENT_POINTS). After
each kill, once the restarted agent has settled every payment, the terminal's own ledger
must show no charge without its fuel delivered or given back (agent/payments/audit.py),
and no payment charged twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.config import EdcConfig, PumpConfig, StationConfig, Timeouts, render_config  # noqa: E402
from agent.killpoints import PAYMENT_POINTS, POINTS  # noqa: E402
from agent.payments.audit import unmatched_details  # noqa: E402
from agent.qr.tokens import issue_token  # noqa: E402
from simulators.broker import MosquittoBroker, die_with_parent  # noqa: E402
from simulators.dart_pump import DartPumpSim  # noqa: E402
from simulators.edc import EdcSim  # noqa: E402
from simulators.hq import HeadquartersSim, synthetic_registry  # noqa: E402
from simulators.relay_board import RelayBoardSim  # noqa: E402
from simulators.scanner import ScannerSim  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

STATION = "31.171.02"
RELAY_DROP_LIMIT_S = 1.5  # board watchdog 0.75 s + heartbeat period + scheduling slack


@dataclass
class Violation:
    kill: int
    instant: str
    check: str
    detail: str


@dataclass
class CampaignResult:
    kills: int = 0
    killpoint_kills: dict[str, int] = field(default_factory=dict)
    random_kills: int = 0
    idle_kills: int = 0
    sessions: int = 0
    litres_ml: int = 0
    hq_duplicates: int = 0
    card_sales: int = 0  # approved at the terminal
    compensations: int = 0  # voids and refunds approved at the terminal
    power_cuts_losing_writes: int = 0  # cuts that took unsynced writes from the journal
    violations: list[Violation] = field(default_factory=list)
    duration_s: float = 0.0




class Customers:
    """One customer thread per pump, always busy unless paused."""

    def __init__(self, board: RelayBoardSim | DartPumpSim, scanners: dict[int, ScannerSim],
                 tokens: dict[int, list[str]], seed: int, nozzles: int = 1) -> None:
        self.board = board
        self.nozzles = nozzles
        self.scanners = scanners
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.idle = {n: threading.Event() for n in scanners}
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in scanners]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def pause(self) -> None:
        self.paused.set()
        for event in self.idle.values():
            event.wait(10)

    def resume(self) -> None:
        for event in self.idle.values():
            event.clear()
        self.paused.clear()

    def stop(self) -> None:
        self.stopped.set()
        self.paused.set()
        for thread in self.threads:
            thread.join(5)

    def _run(self, pump: int) -> None:
        channel = pump - 1
        rng = random.Random(self.rng.random())
        while not self.stopped.is_set():
            if self.paused.is_set():
                self.board.hang_nozzle(channel)
                self.idle[pump].set()
                time.sleep(0.02)
                continue
            if self.nozzles > 1:
                self._multi_grade_fill(channel, pump, rng)
                continue
            self.scanners[pump].scan(rng.choice(self.tokens[pump]))
            if not wait_until(lambda: self.board.relay_closed(channel) or self.paused.is_set(), 1.5):
                time.sleep(0.1)
                continue
            if rng.random() < 0.1:
                time.sleep(rng.uniform(0.5, 2.0))  # walked away: the scan-to-nozzle timeout ends it
                continue
            self.board.lift_nozzle(channel)
            wait_until(lambda: not self.board.relay_closed(channel) or self.paused.is_set(),
                       rng.uniform(0.05, 1.2))
            self.board.hang_nozzle(channel)
            time.sleep(rng.uniform(0.05, 0.3))


    def _multi_grade_fill(self, channel: int, pump: int, rng: random.Random) -> None:
        """Scan then lift either nozzle (any grade, eligible or not), or lift first and scan."""
        assert isinstance(self.board, DartPumpSim)
        nozzle = rng.randint(1, self.nozzles)
        lift_first = rng.random() < 0.2
        if lift_first:
            self.board.lift_nozzle(channel, nozzle)
            time.sleep(rng.uniform(0.05, 0.2))
        self.scanners[pump].scan(rng.choice(self.tokens[pump]))
        time.sleep(rng.uniform(0.1, 0.4))
        if not lift_first:
            self.board.lift_nozzle(channel, nozzle)
        if wait_until(lambda: self.board.relay_closed(channel) or self.paused.is_set(), 1.0):
            wait_until(lambda: not self.board.relay_closed(channel) or self.paused.is_set(), rng.uniform(0.05, 1.2))
        self.board.hang_nozzle(channel)
        time.sleep(rng.uniform(0.05, 0.3))


class Campaign:
    def __init__(self, workdir: Path, pumps: int = 2, seed: int = 1, vehicles: int = 2000,
                 pump_kind: str = "relay", payments: bool = False, nozzles: int = 1,
                 scan_payments: tuple[str, ...] = ("card_prepay:30000", "card", "card_prepay:20000"),
                 power_cut: bool = False) -> None:
        self.workdir = workdir
        self.power_cut = power_cut
        self.cuts_losing_writes = 0
        self.cut_faults: list[str] = []
        self._shim: Path | None = None
        self.scan_payments = scan_payments  # with payments: how the scans pay, in turn
        self.nozzles = nozzles
        self.edc = EdcSim(workdir / "edc-batch.json", ack_timeout_ms=300) if payments else None
        self.points = PAYMENT_POINTS if payments else POINTS
        self._offset = 1 if payments else 0  # a short payment run starts at the first point
        self.rng = random.Random(seed)
        self.broker = MosquittoBroker(workdir=workdir / "broker")
        (workdir / "broker").mkdir(parents=True, exist_ok=True)
        self.registry = synthetic_registry(vehicles, seed=seed)
        self.pump_kind = pump_kind
        self.board: RelayBoardSim | DartPumpSim = (DartPumpSim(pumps=pumps, flow_lps=10.0, nozzles=nozzles)
                                                   if pump_kind == "dart"
                                                   else RelayBoardSim(channels=pumps, flow_lps=10.0, seed=seed))
        self.scanners = {n: ScannerSim() for n in range(1, pumps + 1)}
        self.products = {n: ("pertalite", "solar")[(n - 1) % 2] for n in self.scanners}
        self.grades = {n: tuple(("pertalite", "solar")[(n - 1 + k) % 2] for k in range(nozzles))
                       for n in self.scanners} if nozzles > 1 else {}
        bits = {"pertalite": 0x01, "solar": 0x02}
        self.hq_key = Ed25519PrivateKey.generate()
        today = dt.datetime.now(dt.UTC).date()
        tokens = {n: [issue_token(e.vehicle_id, e.plate, today, self.hq_key) for e in self.registry
                      if e.products & bits[p] and e.status == "active"][:40]
                  for n, p in self.products.items()}
        if self.grades:  # vehicles of either grade scan at a multi-grade pump
            for n in tokens:
                other = tokens[n % len(tokens) + 1] if len(tokens) > 1 else []
                tokens[n] = tokens[n][:20] + other[:20]
        self.customers = Customers(self.board, self.scanners, tokens, seed, nozzles)
        self.hq: HeadquartersSim | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "station.toml"
        self.journal = workdir / "data" / "journal.sqlite"
        self.log = workdir / "agent.log"
        self.start_totals: dict[int, int] = {}
        self.start_nozzles: dict[tuple[int, int], int] = {}

    def start(self) -> None:
        if self.power_cut:
            from tests.bench.fsync_shim import build_shim

            self._shim = build_shim(self.workdir)
        self.broker.start()
        self.hq = HeadquartersSim(self.broker.host, self.broker.port, self.registry, key=self.hq_key)
        self.hq.start()
        self.hq.publish_documents()
        self.board.start()
        if self.edc is not None:
            self.edc.start()
        self.start_totals = {n: self.board.totaliser_ml(n - 1) for n in self.scanners}
        if isinstance(self.board, DartPumpSim):
            self.start_nozzles = {(n, k): self.board.nozzle_totaliser_ml(n - 1, k)
                                  for n, g in self.grades.items() for k in range(1, len(g) + 1)}
        config = StationConfig(
            station_id=STATION, zone="WIB", data_dir=self.workdir / "data",
            broker_host=self.broker.host, broker_port=self.broker.port,
            trusted_keys={self.hq.key_id: self.hq.public_key_hex}, relay_board_port=self.board.path,
            relay_board_kind="dart" if self.pump_kind == "dart" else "uart",
            relay_board_baud=9600 if self.pump_kind == "dart" else 115200,
            pumps=tuple(PumpConfig(n, p, n - 1, self.scanners[n].path, grades=self.grades.get(n, ()))
                        for n, p in self.products.items()),
            timeouts=Timeouts(scan_to_nozzle_s=1.0, no_flow_s=5, duplicate_scan_s=0.5),
            edc=None if self.edc is None else EdcConfig(
                self.edc.path, ack_timeout_s=0.3, response_timeout_s=2.0,
                scan_payments=self.scan_payments),
        )
        self.config_path.write_text(render_config(config))

    def close(self) -> None:
        self.customers.stop()
        self.kill_agent()
        if self.hq is not None:
            self.hq.close()
        self.board.close()
        if self.edc is not None:
            self.edc.close()
        for scanner in self.scanners.values():
            scanner.close()
        self.broker.close()

    # --- the agent process ---------------------------------------------------------------

    def start_agent(self, killpoint: str | None = None) -> bool:
        self.kill_agent()  # never two agents on the same devices
        env = dict(os.environ)
        env.pop("SPBU_KILLPOINT", None)
        if killpoint:
            env["SPBU_KILLPOINT"] = killpoint
        if self._shim is not None:
            # syncs as slow as an SD card's: writes wait unsynced as long as they would there
            env.update(LD_PRELOAD=str(self._shim), SPBU_FSYNC_SHADOW=str(self.journal), SPBU_FSYNC_DELAY_US="20000")
        hellos = self.board.host_hellos()
        with open(self.log, "ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "agent", "agent", "run", "--config", str(self.config_path)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=die_with_parent)  # a campaign that dies takes its agent with it
        # Ready for the campaign once it has said hello to the pumps' controller; an agent
        # that a kill point ended during start-up counts as ready (and already killed).
        agent = self.agent
        return wait_until(lambda: self.board.host_hellos() > hellos or agent.poll() is not None, 10)

    def kill_agent(self) -> None:
        if self.agent is None:
            return
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)
        self.agent = None
        if self.power_cut:  # the agent is gone (killed, or ended itself at a kill point): the power goes
            from tests.bench.fsync_shim import power_cut

            time.sleep(0.3)  # what was in flight to headquarters lands
            if power_cut(self.journal):
                self.cuts_losing_writes += 1
            self.cut_faults += [f for f in self._lost_what_left() if f not in self.cut_faults]

    def _lost_what_left(self) -> list[str]:
        """Right after a power cut, before the agent recovers anything: every record
        headquarters holds is a close the journal kept, and every request the terminal
        received is a step the journal kept (else the station lost what it told others)."""
        assert self.hq is not None
        db = self._db()
        try:
            closed = {str(r[0]) for r in db.execute("SELECT tx_id FROM sessions WHERE state='closed'")}
            steps = ({str(r[0]) for r in db.execute("SELECT ecr_ref FROM payment_steps")}
                     if self.edc is not None else set())
        finally:
            db.close()
        faults = [f"headquarters holds {tx_id}, the journal lost its close"
                  for tx_id in sorted({t["tx_id"] for t in self.hq.transactions()} - closed)]
        if self.edc is not None:
            sent = {m.ecr_ref for m in list(self.edc.requests) if m.trans_type != "05"}  # not inquiries
            faults += [f"the terminal received {ref}, the journal lost its step" for ref in sorted(sent - steps)]
        return faults

    # --- checks --------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)

    def open_sessions(self) -> int:
        if not self.journal.exists():
            return 0
        db = self._db()
        try:
            return int(db.execute("SELECT COUNT(*) FROM sessions WHERE state != 'closed'").fetchone()[0])
        finally:
            db.close()

    def check_quiescent(self, kill: int, instant: str, result: CampaignResult,
                        accepted_before: int) -> None:
        def fail(check: str, detail: str) -> None:
            result.violations.append(Violation(kill, instant, check, detail))

        if not wait_until(lambda: self.open_sessions() == 0, 10, 0.05):
            fail("recovery", f"{self.open_sessions()} sessions still open 10 s after restart")
        accepted = self.board.accepted()
        ids = [a[1] for a in accepted]
        if len(set(ids)) != len(ids) or ids != sorted(ids):
            fail("no_reauthorisation", f"authorisation ids repeated or out of order: {ids[-6:]}")
        if len(accepted) != accepted_before:
            fail("no_reauthorisation", f"{len(accepted) - accepted_before} authorisations after restart "
                 "with no customer scanning")
        if any(self.board.relay_closed(n - 1) for n in self.scanners):
            fail("no_reauthorisation", "a relay is closed after restart with no customer scanning")
        time.sleep(0.05)
        db = self._db()
        try:
            journal = dict(db.execute("SELECT pump, SUM(dispensed_ml) FROM sessions GROUP BY pump").fetchall())
            by_grade = {(int(n), str(g)): int(ml) for n, g, ml in db.execute(
                "SELECT pump, product, SUM(dispensed_ml) FROM sessions GROUP BY pump, product")}
            quota = db.execute("SELECT vehicle_id, product, day, used_ml, reserved_ml FROM quota").fetchall()
            dispensed = {(v, p, d): int(ml) for v, p, d, ml in db.execute(
                "SELECT vehicle_id, product, quota_day, SUM(dispensed_ml) FROM sessions"
                " WHERE state='closed' GROUP BY vehicle_id, product, quota_day")}
        finally:
            db.close()
        for number in self.scanners:
            totaliser = self.board.totaliser_ml(number - 1) - self.start_totals[number]
            if totaliser != int(journal.get(number, 0) or 0):
                fail("litres", f"pump {number}: totaliser {totaliser} ml, journal {journal.get(number, 0)} ml")
        for number, pump_grades in self.grades.items():
            assert isinstance(self.board, DartPumpSim)
            for nozzle, grade in enumerate(pump_grades, 1):
                metered = self.board.nozzle_totaliser_ml(number - 1, nozzle) - self.start_nozzles[(number, nozzle)]
                if metered != by_grade.get((number, grade), 0):
                    fail("litres", f"pump {number} nozzle {nozzle} ({grade}): pump totals {metered} ml,"
                         f" journal {by_grade.get((number, grade), 0)} ml")
        for vehicle, product, day, used, reserved in quota:
            if used != dispensed.get((vehicle, product, day), 0) or reserved != 0:
                fail("quota", f"vehicle {vehicle} {product} {day}: used {used} ml, reserved {reserved} ml,"
                     f" dispensed {dispensed.get((vehicle, product, day), 0)} ml")
        if self.edc is not None:
            self.check_payments(fail)

    def open_payments(self) -> int:
        db = self._db()
        try:
            return int(db.execute("SELECT COUNT(*) FROM payments WHERE state != 'done'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()

    def check_payments(self, fail: Any) -> None:
        """The terminal's ledger against metered fuel: every approved charge is matched by
        delivery or given back, and no payment was charged twice."""
        assert self.edc is not None
        if not wait_until(lambda: self.open_payments() == 0, 20, 0.1):
            fail("payments", f"{self.open_payments()} payments still unsettled 20 s after restart")
        for detail in unmatched_details(self.edc.ledger(), self.journal):
            fail("charge_without_delivery", detail)
        sales: dict[str, int] = {}
        for record in self.edc.ledger():
            if record["type"] == "01" and record["response"] == "00":
                sales[record["ecr_ref"][:8]] = sales.get(record["ecr_ref"][:8], 0) + 1
        twice = [key for key, n in sales.items() if n > 1]
        if twice:
            fail("double_charge", f"payments charged more than once: {twice}")

    def check_delivery(self, result: CampaignResult) -> None:
        assert self.hq is not None
        db = self._db()
        try:
            rows = db.execute("SELECT tx_id, dispensed_ml FROM sessions WHERE state='closed'").fetchall()
        finally:
            db.close()
        journal = dict(rows)
        hq_at = self.hq
        if not wait_until(lambda: set(journal) <= {t["tx_id"] for t in hq_at.transactions()}, 60, 0.1):
            missing = set(journal) - {t["tx_id"] for t in self.hq.transactions()}
            result.violations.append(Violation(-1, "end", "delivery", f"{len(missing)} transactions never "
                                               f"reached headquarters: {sorted(missing)[:5]}"))
        received = {t["tx_id"]: t for t in self.hq.transactions()}
        extra = set(received) - set(journal)
        if extra:
            result.violations.append(Violation(-1, "end", "delivery", f"headquarters holds unknown {extra}"))
        for tx_id, ml in journal.items():
            if tx_id in received and received[tx_id]["dispensed_ml"] != ml:
                result.violations.append(Violation(-1, "end", "delivery", f"{tx_id}: {ml} ml journaled, "
                                                   f"{received[tx_id]['dispensed_ml']} ml at headquarters"))
        result.hq_duplicates = self.hq.duplicates
        if self.edc is not None:
            ledger = self.edc.ledger()
            result.card_sales = sum(1 for r in ledger if r["type"] == "01" and r["response"] == "00")
            result.compensations = sum(1 for r in ledger if r["type"] in ("02", "03") and r["response"] == "00")
        result.sessions = len(journal)
        result.litres_ml = sum(journal.values())

    # --- the campaign --------------------------------------------------------------------

    def run(self, kills: int, deadline_s: float) -> CampaignResult:
        result = CampaignResult()
        started = time.monotonic()
        self.customers.start()
        for kill in range(1, kills + 1):
            if time.monotonic() - started > deadline_s:
                break
            point = self.points[(kill // 2 - self._offset) % len(self.points)] if kill % 2 == 0 else None
            if not self.start_agent(f"{point}:{self.rng.randint(1, 3)}" if point else None):
                code = self.agent.poll() if self.agent else None
                result.violations.append(Violation(kill, "start", "start", f"agent never said hello (exit {code})"))
                break
            self.customers.resume()
            assert self.agent is not None
            if point is not None:
                exited = wait_until(lambda: self.agent is not None and self.agent.poll() is not None, 8, 0.005)
                instant = point if exited else f"{point} (not reached; random)"
            else:
                time.sleep(self.rng.uniform(0.05, 2.5))
                instant = "random"
            self.kill_agent()
            if point is not None and instant == point:
                result.killpoint_kills[point] = result.killpoint_kills.get(point, 0) + 1
            else:
                result.random_kills += 1
            killed_at = time.monotonic()
            if not wait_until(lambda: not any(self.board.relay_closed(n - 1) for n in self.scanners),
                              RELAY_DROP_LIMIT_S, 0.002):
                result.violations.append(Violation(kill, instant, "relay_drop",
                                                   f"a relay still closed {RELAY_DROP_LIMIT_S} s after the kill"))
            result.kills += 1
            self.customers.pause()
            time.sleep(max(0.0, 0.4 - (time.monotonic() - killed_at)))  # settling fills end on the board
            accepted_before = len(self.board.accepted())
            if not self.start_agent() or (self.agent is not None and self.agent.poll() is not None):
                code = self.agent.poll() if self.agent else None
                result.violations.append(Violation(kill, instant, "start", f"agent not up after restart (exit {code})"))
                break
            self.check_quiescent(kill, instant, result, accepted_before)
            self.kill_agent()  # an idle instant: nothing open, nothing may change
            result.idle_kills += 1
        self.customers.stop()
        self.start_agent()
        self.check_delivery(result)
        self.kill_agent()
        result.duration_s = round(time.monotonic() - started, 1)
        result.power_cuts_losing_writes = self.cuts_losing_writes
        result.violations += [Violation(-1, "power cut", "lost_what_left", f) for f in self.cut_faults]
        return result


def run_campaign(kills: int, seed: int = 1, deadline_s: float = 3600.0,
                 workdir: Path | None = None, pump_kind: str = "relay", payments: bool = False,
                 nozzles: int = 1, power_cut: bool = False) -> CampaignResult:
    tmp = workdir or Path(tempfile.mkdtemp(prefix="spbu-crash-"))
    campaign = Campaign(tmp, seed=seed, pump_kind=pump_kind, payments=payments, nozzles=nozzles,
                        power_cut=power_cut)
    try:
        campaign.start()
        return campaign.run(kills, deadline_s)
    finally:
        campaign.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--deadline", type=float, default=3600.0, help="stop starting new kills after this")
    parser.add_argument("--pump", choices=("relay", "dart"), default="relay",
                        help="relay board with dispensers (default) or Wayne DART pumps")
    parser.add_argument("--payments", action="store_true",
                        help="an EDC terminal joins; card prepay/postpay; kills around payment steps")
    parser.add_argument("--nozzles", type=int, default=1, choices=(1, 2),
                        help="grades per DART pump (with --pump dart): the nozzle lifted decides the product")
    parser.add_argument("--power-cut", action="store_true",
                        help="each kill also loses the journal's writes not yet synced (needs cc)")
    args = parser.parse_args(argv)
    if args.power_cut and shutil.which("cc") is None:
        parser.error("--power-cut builds an fsync shim and needs a C compiler (cc)")
    result = run_campaign(args.kills, args.seed, args.deadline, pump_kind=args.pump, payments=args.payments,
                          nozzles=args.nozzles, power_cut=args.power_cut)
    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "params": {"kills": args.kills, "seed": args.seed, "pump": args.pump, "payments": args.payments,
                   "nozzles": args.nozzles, "power_cut": args.power_cut},
        "results": {"kills": result.kills, "random_kills": result.random_kills,
                    "killpoint_kills": result.killpoint_kills, "idle_kills": result.idle_kills,
                    "sessions": result.sessions, "litres": result.litres_ml / 1000,
                    "hq_duplicate_deliveries_dropped": result.hq_duplicates,
                    "card_sales_approved": result.card_sales, "voids_and_refunds": result.compensations,
                    "power_cuts_losing_writes": result.power_cuts_losing_writes,
                    "violations": len(result.violations), "duration_s": result.duration_s},
        "violations": [v.__dict__ for v in result.violations],
        "targets": {"violations": {"measured": len(result.violations), "target": 0,
                                   "met": not result.violations}},
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0 if not result.violations else 1


if __name__ == "__main__":
    sys.exit(main())
