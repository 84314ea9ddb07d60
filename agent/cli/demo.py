"""`spbu demo`: a whole station on real parts, simulated devices, a private broker.

Headquarters signs and publishes the list and policy over MQTT; scanners and the relay
board with its dispensers sit on pseudo-terminals; scripted customers scan, lift and hang
nozzles. At the end three independent records are compared per pump and per product: the
dispensers' totalisers, the agent's journal (read from the SQLite file) and what
headquarters received. Exit 0 only if they agree and every transaction was acknowledged.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import secrets
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import topics
from agent.cli.demo_tanks import DELIVERY_L, Reconciliations, gauge_config, make_gauge, print_tanks
from agent.config import EdcConfig, PumpConfig, StationConfig, Timeouts
from agent.domain import PRODUCT_LABELS, format_litres
from agent.payments.audit import unmatched_approvals
from agent.payments.desk import PaymentChoice
from agent.qr.tokens import issue_token
from agent.station import PaymentSelect, Station
from agent.tanks import CloseShift
from agent.trust.manager_keys import manager_key
from agent.trust.signing import key_id, public_key_hex
from agent.trust.tx_sign import load_station_key
from hq.tx_verify import StationKeys
from simulators.broker import DashboardListener, MosquittoBroker
from simulators.dart_pump import DartPumpSim
from simulators.edc import EdcSim
from simulators.forecourt import Forecourt
from simulators.hq import HeadquartersSim, RegistryEntry, synthetic_registry
from simulators.relay_board import RelayBoardSim
from simulators.scanner import ScannerSim

STATION_ID = "34.401.01"
# The national quota's signed settings in the demo's policy (docs/national-quota.md).
NATIONAL_FEED = {"stale_after_s": 60, "offline_share": 0.5}
PRODUCT_CYCLE = ("pertalite", "solar")
UNREGISTERED_ID = 4242424242424242


@dataclass
class Customer:
    label: str
    pump: int
    qr: str
    want_ml: int
    expect: str  # "ok" or a refusal reason
    payment: str = "cash"  # as the attendant picks it: "card", "card_prepay:100000" ...
    edc_script: tuple[str, ...] = ()  # how the simulated terminal answers this customer
    expect_payment: str = ""  # "method/status" of the settled payment, e.g. "card/paid"
    nozzle: int = 0  # the logical nozzle lifted on a multi-grade pump (0: the pump's only one)


@dataclass
class Outcome:
    customer: Customer
    decision: dict[str, Any] | None
    transaction: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None

    @property
    def payment_outcome(self) -> str:
        pay = self.receipt["payment"] if self.receipt else None
        return f"{pay['method']}/{pay['status']}" if pay else ""

    @property
    def as_expected(self) -> bool:
        if self.decision is None:
            return False
        got = "ok" if self.decision["ok"] else self.decision["reason"]
        if self.customer.expect_payment and self.payment_outcome != self.customer.expect_payment:
            return False
        return got == self.customer.expect


@dataclass
class DemoResult:
    ok: bool
    summary: dict[str, Any]
    differences: list[str] = field(default_factory=list)


def _pick(registry: list[RegistryEntry], used: set[int], category: str, product_bits: int) -> RegistryEntry:
    for entry in registry:
        if (entry.vehicle_id not in used and entry.category == category
                and entry.products == product_bits and entry.status == "active"):
            used.add(entry.vehicle_id)
            return entry
    raise LookupError(f"registry has no free {category} with products {product_bits}")


def multi_grade_customers(registry: list[RegistryEntry], used: set[int], number: int, grades: tuple[str, ...],
                          token: Callable[[int], str], card: bool = False) -> list[Customer]:
    """A dispenser with several grades: the nozzle lifted decides the product. With `card`,
    a customer pays on the island's terminal (postpay)."""
    bits = {"pertalite": 0x01, "solar": 0x02}
    category = {"pertalite": "private_car", "solar": "goods_4w"}
    script = []
    if card:
        entry = _pick(registry, used, category[grades[0]], bits[grades[0]])
        script.append(Customer(f"card postpay, {grades[0]} nozzle 1", number, token(entry.vehicle_id), 15_000, "ok",
                               "card", ("approve",), "card/paid", nozzle=1))
    for nozzle, grade in enumerate(grades, 1):
        entry = _pick(registry, used, category[grade], bits[grade])
        script.append(Customer(f"{grade} from nozzle {nozzle}", number, token(entry.vehicle_id), 20_000, "ok",
                               nozzle=nozzle))
    if "solar" in grades and "pertalite" in grades:
        bike = _pick(registry, used, "motorcycle", bits["pertalite"])
        script.append(Customer("wrong grade lifted", number, token(bike.vehicle_id), 5_000, "wrong_grade",
                               nozzle=grades.index("solar") + 1))
    script.append(Customer("not registered", number, token(UNREGISTERED_ID), 20_000, "not_registered", nozzle=1))
    return script


def script_customers(registry: list[RegistryEntry], pumps: dict[int, str], count: int,
                     token: Callable[[int], str], payments: bool = False,
                     grades: dict[int, tuple[str, ...]] | None = None,
                     card_pumps: set[int] | None = None) -> list[Customer]:
    """The required cases first (each at least once), then ordinary fills up to `count`.
    With `payments`, the first Pertalite pump also serves card customers on the EDC: postpay,
    prepay with a partial fill (refunded automatically) and a declined card paid in cash."""
    used: set[int] = set()
    script: list[Customer] = []
    grades = grades or {}
    for number, product in pumps.items():
        if len(grades.get(number, ())) > 1:
            script += multi_grade_customers(registry, used, number, grades[number], token,
                                            card=card_pumps is not None and number in card_pumps)
            continue
        if product == "pertalite" and (number in card_pumps if card_pumps is not None else payments):
            payments = False  # one pump per terminal: it answers in script order
            script += _card_customers(registry, used, number, token)
        script += _required_cases(registry, used, number, product, token)
    _fill_up(script, registry, used, pumps, grades, token, count)
    return script


def _card_customers(registry: list[RegistryEntry], used: set[int], number: int,
                    token: Callable[[int], str]) -> list[Customer]:
    """Card postpay, prepay with a partial fill (refunded) and a declined card paid in cash."""
    pert = 0x01
    return [
        Customer("card postpay", number, token(_pick(registry, used, "private_car", pert).vehicle_id),
                 20_000, "ok", "card", ("approve",), "card/paid"),
        Customer("card prepay, partial fill, refund", number,
                 token(_pick(registry, used, "private_car", pert).vehicle_id),
                 6_000, "ok", "card_prepay:100000", ("approve",), "card/paid"),
        Customer("card declined, paid cash", number,
                 token(_pick(registry, used, "private_car", pert).vehicle_id),
                 12_000, "ok", "card", ("decline:51",), "cash/declined"),
    ]


def _required_cases(registry: list[RegistryEntry], used: set[int], number: int, product: str,
                    token: Callable[[int], str]) -> list[Customer]:
    """Each decision the attendant can see, at least once per pump."""
    pert, solar = 0x01, 0x02
    if product == "pertalite":
        car = _pick(registry, used, "private_car", pert)
        bike = _pick(registry, used, "motorcycle", pert)
        truck = _pick(registry, used, "goods_4w", solar)
        return [
            Customer("eligible fill", number, token(car.vehicle_id), 30_000, "ok"),
            Customer("capped by quota", number, token(bike.vehicle_id), 25_000, "ok"),
            Customer("over quota", number, token(bike.vehicle_id), 5_000, "quota_exhausted"),
            Customer("unknown QR", number, "SPBU2:HELLO-WORLD-123", 10_000, "unknown_qr"),
            Customer("wrong product", number, token(truck.vehicle_id), 20_000, "wrong_product"),
            Customer("not registered", number, token(UNREGISTERED_ID), 20_000, "not_registered"),
        ]
    else:
        truck = _pick(registry, used, "goods_4w", solar)
        car = _pick(registry, used, "private_car", solar)
        bike = _pick(registry, used, "motorcycle", pert)
        return [
            Customer("eligible fill", number, token(truck.vehicle_id), 40_000, "ok"),
            Customer("capped by quota", number, token(car.vehicle_id), 80_000, "ok"),
            Customer("over quota", number, token(car.vehicle_id), 10_000, "quota_exhausted"),
            Customer("wrong product", number, token(bike.vehicle_id), 5_000, "wrong_product"),
        ]


def _fill_up(script: list[Customer], registry: list[RegistryEntry], used: set[int], pumps: dict[int, str],
             grades: dict[int, tuple[str, ...]], token: Callable[[int], str], count: int) -> None:
    """Ordinary fills, round the pumps and their nozzles, until the script has `count` customers."""
    pert, solar = 0x01, 0x02
    numbers = list(pumps)
    extra = 0
    while len(script) < count:
        number = numbers[extra % len(numbers)]
        pump_grades = grades.get(number, ())
        nozzle = 1 + (extra // len(numbers)) % len(pump_grades) if len(pump_grades) > 1 else 0
        product = pump_grades[nozzle - 1] if nozzle else pumps[number]
        category, bits = (("private_car", pert) if product == "pertalite"
                          else ("goods_4w", solar))
        entry = _pick(registry, used, category, bits)
        script.append(Customer("eligible fill", number, token(entry.vehicle_id),
                               15_000 + 5_000 * (extra % 4), "ok", nozzle=nozzle))
        extra += 1


class DecisionTracker:
    """Listens to the agent's decisions so scripted customers act when a person would."""

    def __init__(self, pumps: list[int]) -> None:
        self.queues: dict[int, queue.Queue[dict[str, Any]]] = {n: queue.Queue() for n in pumps}

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("decision", "transaction", "receipt") and event.get("pump") in self.queues:
            self.queues[event["pump"]].put(event)

    def next(self, pump: int, kind: str, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queues[pump].get(timeout=left)
            except queue.Empty:
                return None
            if event["type"] == kind:
                return event
        return None


def _lift_after_scan(customer: Customer, board: Any, channel: int, tracker: DecisionTracker,
                     decision: dict[str, Any], grades: tuple[str, ...]) -> dict[str, Any] | None:
    """A multi-grade pump: the scan named the eligible grades; the customer lifts a nozzle
    (theirs, or the first eligible grade's), which opens the session for its grade (or is
    refused: the customer hangs it up)."""
    board.lift_nozzle(channel, customer.nozzle or grades.index(decision["product"]) + 1)
    lifted = tracker.next(customer.pump, "decision", 5.0)
    if lifted is None or not lifted["ok"]:
        board.hang_nozzle(channel)
    return lifted


def serve_customers(customers: list[Customer], scanner: ScannerSim, board: Any,
                    channel: int, tracker: DecisionTracker, outcomes: list[Outcome],
                    stop: threading.Event, station: Station | None = None, edc: EdcSim | None = None,
                    grades: tuple[str, ...] = ()) -> None:
    for customer in customers:
        if stop.is_set():
            return
        if customer.payment != "cash" and station is not None and edc is not None:
            edc.script(*customer.edc_script)
            station.events.put(PaymentSelect(customer.pump, PaymentChoice.parse(customer.payment)))
        scanner.scan(customer.qr)
        decision = tracker.next(customer.pump, "decision", 5.0)
        start = board.totaliser_ml(channel)
        lifted = decision is not None and decision.get("code") == "lift_nozzle"
        if lifted and decision is not None:
            decision = _lift_after_scan(customer, board, channel, tracker, decision, grades)
        outcome = Outcome(customer, decision)
        outcomes.append(outcome)
        if decision is None or not decision["ok"]:
            time.sleep(0.2)
            continue
        deadline = time.monotonic() + 5
        while not board.relay_closed(channel) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not lifted:
            start = board.totaliser_ml(channel)
            board.lift_nozzle(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            if board.totaliser_ml(channel) - start >= customer.want_ml:
                break  # tank full: the customer lets go of the trigger
            if not board.relay_closed(channel) and not board.flowing(channel):
                break  # the board stopped at the preset
            time.sleep(0.005)
        board.hang_nozzle(channel)
        outcome.transaction = tracker.next(customer.pump, "transaction", 10.0)
        if customer.payment != "cash":
            outcome.receipt = tracker.next(customer.pump, "receipt", 10.0)  # paid, refunded or sent to cash
        time.sleep(0.3)  # the next customer drives up


def journal_totals(path: Path) -> tuple[dict[int, int], int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT pump, SUM(dispensed_ml), COUNT(*) FROM sessions"
                          " WHERE state='closed' GROUP BY pump").fetchall()
    finally:
        db.close()
    return {int(p): int(ml) for p, ml, _ in rows}, sum(int(n) for _, _, n in rows)


def journal_by_grade(path: Path) -> dict[tuple[int, str], int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT pump, product, SUM(dispensed_ml) FROM sessions"
                          " WHERE state='closed' GROUP BY pump, product").fetchall()
    finally:
        db.close()
    return {(int(p), str(g)): int(ml) for p, g, ml in rows}


def reconcile_nozzles(result: DemoResult, grades: dict[int, tuple[str, ...]],
                      totaliser: dict[tuple[int, int], int], journal: dict[tuple[int, str], int],
                      hq: dict[tuple[int, str], int]) -> None:
    """Per logical nozzle: the pump's own totals for that nozzle = litres journaled and at
    headquarters for its grade. The per-product totals are recomputed from the nozzles."""
    rows: dict[str, dict[str, Any]] = {}
    products: dict[str, dict[str, int]] = {}
    for number, pump_grades in grades.items():
        for nozzle, product in enumerate(pump_grades, 1):
            row: dict[str, Any] = {"product": product, "totaliser_ml": totaliser.get((number, nozzle), 0),
                                   "journal_ml": journal.get((number, product), 0),
                                   "hq_ml": hq.get((number, product), 0)}
            rows[f"{number}/{nozzle}"] = row
            if not row["totaliser_ml"] == row["journal_ml"] == row["hq_ml"]:
                result.differences.append(f"pump {number} nozzle {nozzle} ({product}): totaliser "
                                          f"{row['totaliser_ml']} ml, journal {row['journal_ml']} ml, "
                                          f"headquarters {row['hq_ml']} ml")
            totals = products.setdefault(product, {"totaliser_ml": 0, "journal_ml": 0, "hq_ml": 0})
            for key in totals:
                totals[key] += int(row[key])
    result.summary["nozzles"] = rows
    result.summary["products"] = products
    result.ok = not result.differences


def reconcile(pumps: dict[int, str], totaliser: dict[int, int], journal: dict[int, int],
              hq: dict[int, int], journal_count: int, hq_count: int, unacked: int,
              unmatched: int | None = None) -> DemoResult:
    differences: list[str] = []
    per_pump: dict[str, dict[str, Any]] = {}
    per_product: dict[str, dict[str, int]] = {}
    for number, product in pumps.items():
        row: dict[str, Any] = {"product": product, "totaliser_ml": totaliser.get(number, 0),
               "journal_ml": journal.get(number, 0), "hq_ml": hq.get(number, 0)}
        per_pump[str(number)] = row
        if not row["totaliser_ml"] == row["journal_ml"] == row["hq_ml"]:
            differences.append(f"pump {number}: totaliser {row['totaliser_ml']} ml, journal "
                               f"{row['journal_ml']} ml, headquarters {row['hq_ml']} ml")
        totals = per_product.setdefault(product, {"totaliser_ml": 0, "journal_ml": 0, "hq_ml": 0})
        for key in totals:
            totals[key] += int(row[key])
    if journal_count != hq_count:
        differences.append(f"{journal_count} transactions journaled, {hq_count} at headquarters")
    if unacked:
        differences.append(f"{unacked} transactions not acknowledged by headquarters")
    summary: dict[str, Any] = {"station": STATION_ID, "pumps": per_pump, "products": per_product,
                               "transactions": {"journal": journal_count, "hq": hq_count, "unacked": unacked}}
    if unmatched is not None:
        summary["unmatched_approvals"] = unmatched
        if unmatched:
            differences.append(f"{unmatched} card approvals not matched by fuel delivered or given back")
    return DemoResult(not differences, summary, differences)


def print_summary(result: DemoResult, lang: str) -> None:
    head = ("Ringkasan", "pompa", "produk", "totalisator", "jurnal", "kantor pusat") if lang == "id" \
        else ("Summary", "pump", "product", "totaliser", "journal", "headquarters")
    print(f"\n{head[0]} ({head[3]} / {head[4]} / {head[5]}, L)")
    keys = ("totaliser_ml", "journal_ml", "hq_ml")
    for number, row in result.summary["pumps"].items():
        label = f"{head[1]} {number} {PRODUCT_LABELS[row['product']]}"
        print(f"  {label:<22}" + " / ".join(format_litres(row[k], lang) for k in keys))
    for key, row in result.summary.get("nozzles", {}).items():
        number, nozzle = key.split("/")
        label = f"{head[1]} {number} {'nozel' if lang == 'id' else 'nozzle'} {nozzle} {PRODUCT_LABELS[row['product']]}"
        print(f"  {label:<28}" + " / ".join(format_litres(row[k], lang) for k in keys))
    for product, row in result.summary["products"].items():
        label = f"{head[2]} {PRODUCT_LABELS[product]}"
        print(f"  {label:<22}" + " / ".join(format_litres(row[k], lang) for k in keys))
    tx = result.summary["transactions"]
    print(f"  transaksi: jurnal {tx['journal']}, kantor pusat {tx['hq']}, belum dikonfirmasi {tx['unacked']}"
          if lang == "id" else
          f"  transactions: journal {tx['journal']}, headquarters {tx['hq']}, unacknowledged {tx['unacked']}")
    if "unmatched_approvals" in result.summary:
        count = result.summary["unmatched_approvals"]
        print(f"  persetujuan kartu tanpa BBM/pengembalian (unmatched approvals): {count}" if lang == "id"
              else f"  unmatched approvals: {count}")
    if result.ok:
        print("COCOK: totalisator, jurnal dan kantor pusat sama." if lang == "id"
              else "RECONCILED: totalisers, journal and headquarters agree.")
    else:
        print(("TIDAK COCOK: " if lang == "id" else "MISMATCH: ") + "; ".join(result.differences))


class DemoStation:
    """Everything the demo runs, started and stopped as one; the tests reuse it."""

    def __init__(self, pumps: int = 2, flow_lps: float = 25.0, lang: str = "id",
                 vehicles: int = 1200, broker: MosquittoBroker | None = None,
                 workdir: Path | None = None, quiet: bool = False, pump_kind: str = "relay",
                 dashboard: bool = False, edc: bool = False, attendant: bool = False,
                 station_id: str = STATION_ID, hq: HeadquartersSim | None = None, nozzles: int = 1,
                 tanks: bool = False, leak: bool = False, ledger_dsn: str | None = None, islands: int = 1) -> None:
        """hq: headquarters shared with other stations (started and closed by its owner).
        ledger_dsn: count the quota nationally, with headquarters' usage ledger on this
        PostgreSQL (agent/cli/demo_national.py)."""
        self.station_id = station_id
        self._shared_hq = hq
        self.ledger_dsn = ledger_dsn
        self.ledger: Any = None
        self.products = {n: PRODUCT_CYCLE[(n - 1) % len(PRODUCT_CYCLE)] for n in range(1, pumps + 1)}
        # Multi-grade DART dispensers: nozzle k of every pump carries the k-th grade.
        self.grades: dict[int, tuple[str, ...]] = {
            n: tuple(PRODUCT_CYCLE[(n - 1 + k) % len(PRODUCT_CYCLE)] for k in range(nozzles))
            for n in self.products} if nozzles > 1 else {}
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="spbu-demo-"))
        self._own_broker = broker is None
        self._setup_pages(dashboard, attendant, own_broker=broker is None)
        self.broker = broker or MosquittoBroker(dashboard=self.dashboard,
                                                attendant=self.attendant.listener if self.attendant else None)
        self.registry = hq.registry if hq else synthetic_registry(vehicles)
        self.hq_key = hq.key if hq else Ed25519PrivateKey.generate()  # signs the lists and the QR tokens
        self._setup_forecourt(pumps, islands, nozzles, flow_lps, pump_kind, tanks, leak, edc)
        self.tracker = DecisionTracker(list(self.products))
        self.lines: list[str] = []
        self.quiet = quiet
        self.lang = lang
        self.hq: HeadquartersSim | None = None
        self.station: Station | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_totals: dict[int, int] = {}
        self._start_nozzles: dict[tuple[int, int], int] = {}

    def _setup_pages(self, dashboard: bool, attendant: bool, own_broker: bool) -> None:
        # The manager's dashboard: served by the broker's WebSockets listener, one user.
        self.dashboard_user = "manager"
        self.dashboard_password = secrets.token_urlsafe(12)  # the broker login (crosses the LAN)
        self.dashboard_passphrase = secrets.token_urlsafe(12)  # the signing key's; never sent anywhere
        self.dashboard: DashboardListener | None = None
        if dashboard:
            from agent.cli.dashboard_files import dashboard_dir

            self.dashboard = DashboardListener(dashboard_dir(), self.station_id,
                                               {self.dashboard_user: self.dashboard_password})
            assert own_broker, "the dashboard needs the demo's own broker"
        # The attendants' phones: TLS WebSockets with the station's certificate, one device per two pumps.
        self.attendant = None
        if attendant:
            from simulators.attendant_setup import make_attendant_setup

            assert own_broker, "the attendant's page needs the demo's own broker"
            self.attendant = make_attendant_setup(self.station_id, list(self.products), self.workdir)

    def _setup_forecourt(self, pumps: int, islands: int, nozzles: int, flow_lps: float, pump_kind: str,
                         tanks: bool, leak: bool, edc: bool) -> None:
        # Relay board with retrofitted dispensers, or Wayne DART pumps on one line.
        self.pump_kind = pump_kind
        # --islands N: the pumps split into N islands, each with its own line and EDC terminal.
        size = -(-pumps // islands)  # contiguous: island 1 has pumps 1..size, and so on
        self.islands = [list(range(1 + i * size, min(pumps, (i + 1) * size) + 1)) for i in range(islands)]
        self.island_of = {n: i for i, members in enumerate(self.islands) for n in members}
        order = [n for members in self.islands for n in members]  # station channel = position here

        def line(count: int) -> RelayBoardSim | DartPumpSim:
            return (DartPumpSim(pumps=count, flow_lps=flow_lps, nozzles=nozzles) if pump_kind == "dart"
                    else RelayBoardSim(channels=count, flow_lps=flow_lps))
        self.channel_of = {n: order.index(n) for n in self.products}
        self.board: Any = (line(pumps) if islands == 1 else
                           Forecourt([line(len(m)) for m in self.islands], [len(m) for m in self.islands]))
        self.scanners = {n: ScannerSim() for n in self.products}
        # The tank gauge (TLS console) whose tanks the dispensers drain: agent/cli/demo_tanks.py
        self.gauge = make_gauge(self.products, self.grades, self.board, self.channel_of, leak) if tanks else None
        self.reconciliations = Reconciliations()
        self.edcs = [EdcSim(self.workdir / f"edc-batch-{i + 1}.json") for i in range(islands)] if edc else []
        self.edc = self.edcs[0] if self.edcs else None

    def _line(self, text: str) -> None:
        if self.station_id != STATION_ID:
            text = f"[{self.station_id}] {text}"
        self.lines.append(text)
        if not self.quiet:
            print(text, flush=True)

    def token(self, vehicle_id: int) -> str:
        """The signed QR a customer shows; vehicles outside the registry get a made-up plate."""
        plate = next((e.plate for e in self.registry if e.vehicle_id == vehicle_id), "B 4242 ZZ")
        return issue_token(vehicle_id, plate, dt.datetime.now(dt.UTC).date(), self.hq_key)

    def config(self) -> StationConfig:
        assert self.hq is not None
        return StationConfig(
            station_id=self.station_id, zone="WIB", data_dir=self.workdir / "station",
            broker_host=self.broker.host, broker_port=self.broker.port,
            trusted_keys={}, trust_root=self._root_file(),
            relay_board_port=self.board.path,
            relay_board_lines=tuple(self.board.paths[1:]) if isinstance(self.board, Forecourt) else (),
            relay_board_kind="dart" if self.pump_kind == "dart" else "uart",
            relay_board_baud=9600 if self.pump_kind == "dart" else 115200,
            pumps=tuple(PumpConfig(n, p, self._line_channel(n)[1], self.scanners[n].path,
                                   grades=self.grades.get(n, ()), line=self._line_channel(n)[0])
                        for n, p in self.products.items()),
            lang=self.lang, timeouts=Timeouts(scan_to_nozzle_s=30, no_flow_s=20),
            edc=self._edc_config(0) if self.edcs else None,
            more_edcs=tuple(self._edc_config(i) for i in range(1, len(self.edcs))),
            manager_keys=self._manager_keys(), station_key=self._station_key(),
            attendant=self.attendant.config if self.attendant else None,
            tank_gauge=gauge_config(self.gauge) if self.gauge else None,
        )

    def card_pumps(self) -> set[int] | None:
        """One pump per island takes card customers (its terminal answers them in order):
        the first multi-grade pump, or the first Pertalite pump."""
        if len(self.islands) == 1 and not self.grades:
            return None  # the classic demo: the first Pertalite pump
        return {next((n for n in members if n in self.grades or self.products[n] == "pertalite"), members[0])
                for members in self.islands}

    def _line_channel(self, number: int) -> tuple[int, int]:
        channel = self.channel_of[number]
        return self.board.where(channel) if isinstance(self.board, Forecourt) else (0, channel)

    def _edc_config(self, island: int) -> EdcConfig:
        return EdcConfig(self.edcs[island].path, ack_timeout_s=0.5, response_timeout_s=10.0,
                         pumps=tuple(self.islands[island]) if len(self.edcs) > 1 else ())

    def _station_key(self) -> Path:
        """The station's EC key, as `spbu provision` makes it: it signs every transaction."""
        path = self.workdir / "station.key"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            path.chmod(0o600)
        return path

    def _manager_keys(self) -> dict[str, str]:
        """The dashboard user's command key, derived from the password as the browser does."""
        if self.dashboard is None:
            return {}
        public = manager_key(self.station_id, self.dashboard_user, self.dashboard_passphrase).public_key()
        return {key_id(public): public_key_hex(public)}

    def _root_file(self) -> Path:
        """The root of trust headquarters provisions the station with (signed allow-list)."""
        assert self.hq is not None
        path = self.workdir / "root.json"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # a restarted demo station keeps the root it was provisioned with
            path.write_bytes(self.hq.root_bytes())
        return path

    def start(self, timeout_s: float = 15.0) -> None:
        self.broker.start()
        keys = StationKeys()
        keys.add(self.station_id, load_station_key(self._station_key()).public_key())
        if self.attendant is not None:
            self.attendant.start()  # the page over HTTPS; MQTT is on the broker's TLS WebSockets
        if self._shared_hq is not None:
            self.hq = self._shared_hq
            if self.hq.station_keys is None:
                self.hq.station_keys = keys
            else:  # shared by several stations: each has its own key
                self.hq.station_keys.add(self.station_id, keys.keys[self.station_id])
        else:
            self.hq = HeadquartersSim(self.broker.host, self.broker.port, self.registry, key=self.hq_key,
                                      station_keys=keys, usage_feed=NATIONAL_FEED if self.ledger_dsn else None)
            self.hq.start()
            self.hq.publish_documents()
            if self.ledger_dsn is not None:
                from agent.cli.demo_national import start_ledger

                self.ledger = start_ledger(self.broker, self.ledger_dsn, self.hq)
        self.board.start()
        if self.gauge is not None:
            self.gauge.start()
        for terminal in self.edcs:
            terminal.start()
        self._start_totals = {n: self.board.totaliser_ml(self.channel_of[n]) for n in self.products}
        if self.pump_kind == "dart":
            self._start_nozzles = {(n, k): self.board.nozzle_totaliser_ml(self.channel_of[n], k)
                                   for n, g in self.grades.items() for k in range(1, len(g) + 1)}
        self.station = Station(self.config(), on_line=self._line, listeners=[self.tracker, self.reconciliations])
        self.station.start()
        self._thread = threading.Thread(target=self.station.run, args=(self._stop,), name="agent",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            docs = self.station.docs
            edc_ready = self.edc is None or self.station.payments.available
            tanks_ready = self.gauge is None or bool(self.station.tanks and self.station.tanks.shift)
            synced = self.station.usage.national.synced or not self.station.usage.enabled
            if (docs.allowlist is not None and docs.policy is not None and self.station.pumps_ready() and edc_ready
                    and synced and tanks_ready):
                return
            time.sleep(0.05)
        raise TimeoutError("the agent did not receive the signed list and policy in time")

    def serve(self, customers: list[Customer], timeout_s: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        threads = []
        for number in self.products:
            mine = [c for c in customers if c.pump == number]
            thread = threading.Thread(
                target=serve_customers,
                args=(mine, self.scanners[number], self.board, self.channel_of[number], self.tracker, outcomes,
                      self._stop, self.station, self.edcs[self.island_of[number]] if self.edcs else None,
                      self.grades.get(number, ())),
                name=f"customers-pump-{number}", daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return outcomes

    def wait_delivered(self, timeout_s: float) -> None:
        assert self.station is not None and self.hq is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.unacked() == 0:
                return
            time.sleep(0.1)

    def unacked(self) -> int:
        db = sqlite3.connect(f"file:{self.journal_path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()

    @property
    def journal_path(self) -> Path:
        return self.workdir / "station" / "journal.sqlite"

    def reconcile(self) -> DemoResult:
        assert self.hq is not None
        totaliser = {n: self.board.totaliser_ml(self.channel_of[n]) - self._start_totals.get(n, 0)
                     for n in self.products}
        journal, journal_count = journal_totals(self.journal_path)
        hq: dict[int, int] = {}
        hq_txs = [t for t in self.hq.transactions() if t.get("station") == self.station_id]
        for tx in hq_txs:
            hq[int(tx["pump"])] = hq.get(int(tx["pump"]), 0) + int(tx["dispensed_ml"])
        unmatched = (unmatched_approvals([r for e in self.edcs for r in e.ledger()], self.journal_path)
                     if self.edcs else None)
        result = reconcile(self.products, totaliser, journal, hq, journal_count, len(hq_txs), self.unacked(),
                           unmatched)
        if self.grades and self.pump_kind == "dart":
            hq_grade: dict[tuple[int, str], int] = {}
            for tx in hq_txs:
                key = (int(tx["pump"]), str(tx["product"]))
                hq_grade[key] = hq_grade.get(key, 0) + int(tx["dispensed_ml"])
            by_nozzle = {(n, k): self.board.nozzle_totaliser_ml(self.channel_of[n], k)
                         - self._start_nozzles.get((n, k), 0)
                         for n, g in self.grades.items() for k in range(1, len(g) + 1)}
            reconcile_nozzles(result, self.grades, by_nozzle, journal_by_grade(self.journal_path), hq_grade)
        return result

    def reconcile_tanks(self, result: DemoResult, leak: bool, timeout_s: float = 10.0) -> None:
        """The agent closes the shift; per tank, the variance must stay within tolerance,
        except the leaking tank's, which must raise the alarm."""
        assert self.station is not None
        self.station.events.put(CloseShift())
        try:
            shift = self.reconciliations.results.get(timeout=timeout_s)
        except queue.Empty:
            result.ok = False
            result.differences.append("no tank reconciliation from the agent")
            return
        result.summary["tanks"] = shift["products"]
        for row in shift["products"]:
            leaking = leak and 1 in row["tanks"]
            if row["alarm"] != leaking:
                result.ok = False
                result.differences.append(f"tank {row['tanks']} {row['product']}: variance {row['variance_l']} L,"
                                          f" alarm {row['alarm']}, expected {'an alarm' if leaking else 'none'}")

    @property
    def dashboard_url(self) -> str:
        assert self.dashboard is not None
        return f"http://127.0.0.1:{self.dashboard.port}/?station={self.station_id}"

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.station is not None:
            self.station.close()
        if self.ledger is not None:
            self.ledger.close()
        if self.hq is not None and self._shared_hq is None:
            self.hq.close()
        self.board.close()
        if self.gauge is not None:
            self.gauge.close()
        for terminal in self.edcs:
            terminal.close()
        for scanner in self.scanners.values():
            scanner.close()
        if self.attendant is not None:
            self.attendant.close()
        if self._own_broker:
            self.broker.close()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _intro(demo: DemoStation, pumps: int, version: int, lang: str) -> str:
    return (f"Stasiun {STATION_ID}: {pumps} pompa, daftar kendaraan v{version}"
            f" ({len(demo.registry)} kendaraan), broker 127.0.0.1:{demo.broker.port}"
            if lang == "id" else
            f"Station {STATION_ID}: {pumps} pumps, vehicle list v{version}"
            f" ({len(demo.registry)} vehicles), broker 127.0.0.1:{demo.broker.port}")


def _judge_customers(result: DemoResult, script: list[Customer], outcomes: list[Outcome]) -> None:
    """Every scripted customer served, each with the decision the script expects."""
    unexpected = [o for o in outcomes if not o.as_expected]
    missing = len(script) - len(outcomes)
    if unexpected or missing:
        result.ok = False
        result.differences += [f"{o.customer.label} on pump {o.customer.pump}: expected "
                               f"{o.customer.expect}, got {o.decision}" for o in unexpected]
        if missing:
            result.differences.append(f"{missing} customers not served in time")
    result.summary["customers"] = [
        {"label": o.customer.label, "pump": o.customer.pump, "expected": o.customer.expect,
         "ok": o.decision["ok"] if o.decision else None,
         "reason": o.decision["reason"] if o.decision else None,
         "payment": o.payment_outcome or None,
         "dispensed_ml": o.transaction["dispensed_ml"] if o.transaction else 0}
        for o in outcomes]


def run_demo(pumps: int = 2, customers: int = 12, lang: str = "id", json_path: Path | None = None,
             flow_lps: float = 25.0, timeout_s: float = 60.0, pump_kind: str = "relay",
             dashboard: bool = False, attendant: bool = False, nozzles: int = 1, leak: bool = False,
             islands: int = 1) -> int:
    started = time.monotonic()
    from agent.cli.demo_national import private_postgres, second_station

    pg = private_postgres()
    demo = DemoStation(pumps=pumps, flow_lps=flow_lps, lang=lang, pump_kind=pump_kind, dashboard=dashboard,
                       edc=True, attendant=attendant, nozzles=nozzles, ledger_dsn=pg.create_database("ledger"),
                       tanks=True, leak=leak, islands=islands)
    try:
        demo.start()
        version = demo.hq.allowlist_version if demo.hq else 0
        print(_intro(demo, pumps, version, lang), flush=True)
        script = script_customers(demo.registry, demo.products, customers, demo.token, payments=True,
                                  grades=demo.grades, card_pumps=demo.card_pumps())
        budget = max(5.0, timeout_s - (time.monotonic() - started) - 10)
        tanker = threading.Timer(3.0, lambda: demo.gauge.deliver(2, DELIVERY_L) if demo.gauge else None)
        tanker.start()  # a tanker drops Solar while customers fuel
        outcomes = demo.serve(script, budget)
        tanker.join()
        national = second_station(demo, lang, Customer)
        demo.wait_delivered(max(5.0, timeout_s - (time.monotonic() - started)))
        result = demo.reconcile()
        demo.reconcile_tanks(result, leak)
        result.summary["national"] = national
        if not national["ok"]:
            result.ok = False
            result.differences.append(f"national quota: {national['detail']}")
        _judge_customers(result, script, outcomes)
        result.summary["duration_s"] = round(time.monotonic() - started, 2)
        result.summary["topics"] = {"tx": topics.tx(STATION_ID)}
        print_summary(result, lang)
        if "tanks" in result.summary:
            print_tanks(result.summary["tanks"], lang)
        if json_path is not None:
            json_path.write_text(json.dumps({"ok": result.ok, **result.summary,
                                             "differences": result.differences}, indent=2) + "\n")
        if dashboard or attendant:
            keep_serving(demo, lang)
        return 0 if result.ok else 1
    except KeyboardInterrupt:
        print("dihentikan" if lang == "id" else "interrupted", file=sys.stderr)
        return 130
    finally:
        demo.close()
        pg.close()


def keep_serving(demo: DemoStation, lang: str) -> None:
    """`--dashboard`: the station keeps running for the manager's page until Ctrl-C."""
    text = ("Dasbor pengelola: {url}\n  pengguna {user}, kata sandi {password}, frasa tanda tangan {passphrase}\n"
            "  Ctrl-C untuk berhenti" if lang == "id" else
            "Manager dashboard: {url}\n  user {user}, password {password}, signing passphrase {passphrase}\n"
            "  Ctrl-C to stop")
    if demo.dashboard is not None:
        print(text.format(url=demo.dashboard_url, user=demo.dashboard_user, password=demo.dashboard_password,
                          passphrase=demo.dashboard_passphrase), flush=True)
    if demo.attendant is not None:
        from simulators.attendant_setup import describe

        print(describe(demo.attendant, lang), flush=True)
    while True:
        time.sleep(3600)
