"""The station agent: one event loop that owns every decision.

Device drivers and the MQTT link run in their own threads and only put events on the
queue; this loop decides, journals, then acts. Nothing here waits on the network: a scan
is answered from the local allow-list, policy and journal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import __version__, disk_guard, grades, homeassistant, topics
from agent import pump_states as ps
from agent.allowlist.freeze import FRESH
from agent.allowlist.sync import AllowListSync, SyncEvent
from agent.attendant import topics as attendant_topics
from agent.attendant.desk import AttendantDesk
from agent.broker_login import apply_login
from agent.clock import ClockGuard, ClockReading
from agent.command_exec import execute
from agent.config import SCANNER_SUFFIXES, ConfigError, PumpConfig, StationConfig
from agent.device_watch import DeviceWatch
from agent.docstore import DocumentStore, UpdateResult
from agent.domain import PRODUCT_LABELS, amount_idr, format_litres, mask_plate
from agent.eligibility import (
    PUMP_BUSY,
    PUMP_UNAVAILABLE,
    VEHICLE_BUSY,
    Decision,
    decide,
)
from agent.islands import IslandEdc, IslandPayments
from agent.journal import Journal, SessionRow, insert_outbox
from agent.killpoints import killpoint
from agent.live_view import LiveSession, LiveView
from agent.messages import attendant_line
from agent.mqtt_link import Incoming, LinkState, MqttLink
from agent.outbox import OutboxSender
from agent.payments.desk import CASH, PaymentChoice, PaymentDesk, cash_payment, prepay_charge
from agent.payments.receipt import render_receipt
from agent.presence import heartbeat, pump_states
from agent.qr.identify import identify, legacy_salt_of
from agent.qr.token_policy import refusal as token_refusal
from agent.retention import Retention, at_rest
from agent.sales_chart import hourly
from agent.status_socket import StatusServer, snapshot, start_line
from agent.tanks import CloseShift, TankDesk
from agent.trust.acks import AckRefused, ack_keyring, verify_ack
from agent.trust.commands import CommandGate, CommandRejected, CommandStore, keyring_from_config
from agent.trust.documents import ALLOWLIST_KIND, POLICY_KIND
from agent.trust.root import TrustError
from agent.trust.tx_sign import StationKeyError, load_station_key, sign_record
from agent.trust_mode import check_trust_mode
from agent.updates.updater import UpdateAgent, UpdateEvent
from agent.usage_link import UsageLink, fill_cap
from hal.edc import EdcLink
from hal.pump_select import PumpLine, open_pump_controller
from hal.relay_board import (
    BoardEnd,
    BoardEvent,
    BoardFault,
    BoardHello,
    BoardLink,
    BoardStatus,
    CommandLost,
    FirmwareResult,
    NozzleChange,
    PumpOnline,
)
from hal.scanner import ScanError, ScannerEvent, ScannerNotice, ScannerState, ScanRead, SerialScanner
from hal.scanner_select import AbsentScanner, Scanner, ScannerUnavailable, open_scanner
from hal.tank_gauge import GaugeEvent

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


WAKE = object()  # an event that only wakes the loop (closes made durable: records may go out)


@dataclass(frozen=True)
class PumpScan:
    pump: int
    event: ScannerEvent


@dataclass(frozen=True)
class PaymentSelect:
    """The attendant picked how the next customer on a pump pays (keypad, dashboard, demo)."""

    pump: int
    choice: PaymentChoice


# The loop sleeps until its next event or timer. Idle, the only timer is the keep-alive that
# lets the relay board's heartbeats go on (the board's dead-man window is 1 s); with a fill,
# a stop or a payment under way its timers need a finer grain.
IDLE_WAIT_S = 0.5
SWITCH_INTERVAL_S = 0.001
FLOOR_EVERY_S = 60.0  # the clock floor rides on a close at most this often
# The certain time this far behind the clock (offline reboots add up) is shown to the manager.
CLOCK_LAG_ALERT = dt.timedelta(hours=3)
CERTAIN_EVERY_S = 1800.0  # the certain time (agent/clock.py) saved by a timer when no close carried it
BUSY_WAIT_S = 0.1
# The dashboard's "outbox growing" alarm: about an hour of a busy station's sales.
OUTBOX_ALERT_DEPTH = 200
CONDITIONS_EVERY_S = 5.0


def _recent_item(row: dict[str, Any], payment: dict[str, Any] | None) -> dict[str, Any]:
    closed = row.pop("closed_at")
    row["plate_masked"] = mask_plate(row.pop("plate"))
    row["closed_at"] = dt.datetime.fromtimestamp(closed, dt.UTC).isoformat() if closed else None
    payment = payment or {"method": "cash", "status": "paid"}  # no card or QRIS payment row: cash
    row["payment"] = {"method": payment.get("method"), "status": payment.get("status")}
    return row


def pump_lines(config: StationConfig) -> list[PumpLine]:
    """The station's relay boards or DART lines: line 0 on relay_board_port, then the rest."""
    lines = []
    for i, port in enumerate((config.relay_board_port, *config.relay_board_lines)):
        on_line = [p for p in config.pumps if p.line == i]
        by_channel = sorted(on_line, key=lambda p: p.channel)
        lines.append(PumpLine(port, tuple(p.channel for p in on_line),
                              tuple(len(p.nozzle_products) for p in by_channel)))
    return lines


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Station:
    def __init__(
        self,
        config: StationConfig,
        on_line: Callable[[str], None] | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        check_trust_mode(config)
        self._init_loop_state()
        self.config = config
        self.events: queue.Queue[object] = queue.Queue()
        self.on_line = on_line or (lambda text: print(text, flush=True))
        self.listeners = listeners or []
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.data_dir / "journal.sqlite", on_durable=lambda: self.events.put(WAKE),
                               group_commit=True)
        self.docs = DocumentStore(config.data_dir, config.trusted_keys, config.trust_root)
        self.outbox = OutboxSender(self.journal)
        self.pumps = {p.number: ps.PumpRuntime(p) for p in config.pumps}
        self._by_channel = {p.key: p.number for p in config.pumps}
        self.board = open_pump_controller(config.relay_board_kind, pump_lines(config), self.events.put,
                                          baudrate=config.relay_board_baud, gpio_pins=config.relay_gpio,
                                          active_high=config.relay_active_high)
        self.scanners = [self._open_scanner(p) for p in config.pumps]
        self._open_links(config)
        self.clock = ClockGuard(config.zone)
        # An expired root brings nothing new (agent/trust/root.py), judged by the guarded clock.
        self.docs.trust.clock = lambda: self.clock.judged(utc_now(), time.monotonic())
        self.ready = threading.Event()
        self.live = LiveView(config.station_id, {p.number: p.product for p in config.pumps},
                             lambda topic, payload, qos, retain: self.link.publish(topic, payload, qos, retain))
        self._open_payments(config)
        self._open_commands(config)
        self._open_desks(config)
        self._open_headquarters_feeds(config)
        # Free space, read-only disk and the reserve that lets running fills close (agent/disk_guard.py).
        self.disk = disk_guard.DiskGuard(config.data_dir, config.disk)
        self.retention = Retention(self.journal, config.retention)  # plates masked, old sales pruned
        self.devices = self._watch_devices(config)
        self.status = StatusServer(config.data_dir)

    def _init_loop_state(self) -> None:
        """What the station loop keeps between turns: alarms raised, timers, pending closes."""
        self._freeze_state = FRESH
        self.board_connected = False
        self._clock_trusted = True
        self._clock_provisional = False
        self._conditions_mono = 0.0
        self.heartbeat_s = 30.0
        self._last_heartbeat = 0.0
        self.acks_refused = 0
        self._anchor_saved_mono: float | None = None
        self._pending_closes: dict[int, tuple[SessionRow, int, str, bool]] = {}
        self._floor_journaled = -FLOOR_EVERY_S  # monotonic time the clock floor was last journaled
        self._disk_alarmed = disk_guard.OK
        self._close_retry_mono = 0.0
        self._loop_errors: dict[str, float] = {}

    def _open_links(self, config: StationConfig) -> None:
        """MQTT: the station's link and the allow-list's own client, both logged in; the station key."""
        self.link = MqttLink(config.station_id, config.broker_host, config.broker_port, self.events.put,
                             subscribe=(attendant_topics.requests(config.station_id),) if config.attendant else ())
        self.allowlist_sync = AllowListSync(config.broker_host, config.broker_port, config.station_id,
                                            self.docs.repo, self.docs.trust, self.events.put)
        self.allowlist_sync_state: dict[str, Any] = {"state": "idle"}
        apply_login(config, self.link.client, self.allowlist_sync.client)
        # Headquarters stores only records its station signed (agent/trust/tx_sign.py).
        try:
            self.station_key = load_station_key(config.station_key) if config.station_key else None
        except StationKeyError as exc:
            raise ConfigError(str(exc)) from exc

    def _open_desks(self, config: StationConfig) -> None:
        # The attendants' phones (agent/attendant/): sign-in, camera scans, payment choice, stop.
        self.attendants = None if config.attendant is None else AttendantDesk(
            config.station_id, config.attendant, self.journal,
            lambda topic, payload, qos, retain: self.link.publish(topic, payload, qos, retain), self,
            {p.number: p.product for p in config.pumps}, self._price)
        if self.attendants is not None:
            self.listeners.append(self.attendants.on_event)
        self.tanks = None if config.tank_gauge is None else TankDesk(
            config.tank_gauge, self.journal, self.events.put, self._publish_station, self._emit,
            lambda: any(p.session is not None for p in self.pumps.values()))

    def _open_headquarters_feeds(self, config: StationConfig) -> None:
        # Fleet updates (agent/updates/updater.py); exit_code set: the service loop ends, we restart.
        self.updates = UpdateAgent(config.update, self) if config.update is not None else None
        self.exit_code: int | None = None
        # National quota: usage at other stations, from headquarters' signed feed.
        # Reservations and sync requests are signed with the station key and dated by
        # headquarters' time as this station knows it (a clock set wrong must not get them refused).
        self.usage = UsageLink(config.station_id, config.zone, self.docs.trust,
                               lambda topic, payload, qos, retain: self.link.publish(topic, payload, qos, retain),
                               self._emit, lambda: self.docs.policy, key=self.station_key, hq_now=self._hq_now)

    def _open_payments(self, config: StationConfig) -> None:
        # One EDC terminal per island (agent/islands.py), each paying for its own pumps.
        self.payments = IslandPayments(config, self.journal, self.events.put, lambda terminal, edc: PaymentDesk(
            self.journal, terminal, config.zone, lambda key, pump, kw: self._say(key, pump, **kw), self._emit,
            self._open_prepaid, self._queue_record,
            tuple(PaymentChoice.parse(c) for c in edc.scan_payments) if edc else (), config.lang, self.on_line,
            edc.pumps if edc and config.more_edcs else ()))

    def _open_commands(self, config: StationConfig) -> None:
        # Signed commands: the trust root's `commands` role (plus the station manager's
        # dashboard key for the manager's commands), nonces and locks.
        self.command_store = CommandStore(config.data_dir / "commands.sqlite")
        self.command_gate = CommandGate(config.station_id, lambda: self.docs.trust.keyring("commands"),
                                        self.command_store, keyring_from_config(config.manager_keys),
                                        lambda: self.docs.trust.check_fresh("commands"))
        self.locked: set[int] = self.command_store.locked()
        self.config_path: Path | None = None  # re-read by the reload_config command

    @staticmethod
    def _watch_devices(config: StationConfig) -> DeviceWatch:
        """Speaking up: a warning once per missing device, `spbu agent status` on a local socket."""
        devices = DeviceWatch(time.monotonic())
        devices.add("pump controller", f"{config.relay_board_kind} {config.relay_board_port}")
        for p in config.pumps:
            devices.add(f"scanner pump {p.number}", p.scanner_port)
        if config.edc is not None:
            devices.add("EDC terminal", config.edc.port)
        devices.add("broker", f"{config.broker_host}:{config.broker_port}")
        return devices

    def _open_scanner(self, pump: PumpConfig) -> Scanner:
        try:
            return open_scanner(pump.scanner_port, self._scanner_sink(pump.number), baudrate=self.config.scanner_baud,
                                suffix=SCANNER_SUFFIXES[self.config.scanner_suffix])
        except ScannerUnavailable as exc:  # one pump without its scanner, not a station down
            log.error("scanner of pump %d unavailable: %s", pump.number, exc)
            return AbsentScanner(str(exc))

    @property
    def token_keys(self) -> dict[str, Ed25519PublicKey]:
        """The trust root's `tokens` role, as it stands now (a root rotation applies at once)."""
        return self.docs.trust.keyring("tokens")

    def health(self, max_task_age_s: float = 3.0) -> tuple[bool, str]:
        """Are the device tasks going round their loops? (The caller's own loop being alive
        is shown by it calling this.) Absent devices are not a fault of the agent."""
        now = time.monotonic()
        tasks = [("pump controller", self.board.last_beat())]
        tasks += [(f"EDC terminal {i + 1}", t.last_beat()) for i, t in enumerate(self.payments.terminals)]
        tasks += [(f"scanner {p.number}", s.last_beat()) for p, s in zip(self.config.pumps, self.scanners,
                                                                         strict=True)]
        stuck = [name for name, beat in tasks if now - beat > max_task_age_s]
        return (not stuck, "stuck: " + ", ".join(stuck) if stuck else "ok")

    def pending_close_ids(self) -> list[str]:
        """Fills ended at the pump whose close the journal could not take yet (disk)."""
        return sorted(s.tx_id for s, _, _, _ in self._pending_closes.values())

    def status_line(self) -> str:
        pumps = " ".join(f"{n}:{p.state}" for n, p in self.pumps.items())
        allowlist = self.docs.allowlist.version if self.docs.allowlist else 0
        link = "up" if self.link.connected else "down"
        clock = "ok" if self._clock_trusted else "UNTRUSTED"
        return f"pumps {pumps}; outbox {self.journal.outbox_depth()}; list v{allowlist}; hq link {link}; clock {clock}"

    def pumps_ready(self) -> bool:
        """Every pump can take a scan: devices answered, DART totals known."""
        return self.board_connected and all(
            p.state not in (ps.INOPERATIVE, ps.RECOVERING)
            and not (self.board.totals_required and p.device_total is None) for p in self.pumps.values())

    def _scanner_sink(self, pump: int) -> Callable[[ScannerEvent], None]:
        return lambda event: self.events.put(PumpScan(pump, event))

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        # The scan path must not wait behind a background thread's 5 ms GIL slice (a sync
        # worker, an MQTT loop): hand the GIL over at 1 ms, as a latency-bound loop wants.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        if self.updates is not None:
            self.updates.before_devices()  # the relay board on this release's firmware first
        self.disk.check()  # the reserve is written by the first disk tick, off the start-up path
        floor = self.journal.get_meta("wall_floor")
        if floor:
            self.clock.observe(dt.datetime.fromisoformat(floor))
        self.clock.last_trusted_day = self.journal.get_meta("last_trusted_day")
        self.clock.restore_anchor(self.journal.get_meta("hq_anchor"), time.monotonic())
        self.clock.restore_certain(self.journal.get_meta("certain_time"), time.monotonic())
        for result in self.docs.load_saved():
            self.report_update(result)
        if self.docs.trust.state_error:
            self._emit({"type": "alert", "alert": "trust_state_corrupt", "detail": self.docs.trust.state_error})
        self.payments.recover()
        self._recover()
        day = self._read_clock().quota_day
        self.live.seed(day, self.journal.day_totals(day),
                       [_recent_item(r, self.payments.payment_of(r["tx_id"])) for r in self.journal.recent_closed(20)])
        self.board.start()
        if self.tanks is not None:
            self.tanks.gauge.start()
        self.payments.start()
        for scanner in self.scanners:
            scanner.start()
        self.link.start()
        self.allowlist_sync.start()
        if self.updates is not None:
            self.updates.start()
        self.devices.started = time.monotonic()
        log.info("%s", start_line(self))
        self.status.update(snapshot(self))
        self.status.start()
        self.ready.set()

    def close(self) -> None:
        if self.updates is not None:
            self.updates.close()
        self.status.close()
        self.allowlist_sync.close()
        self.link.close(offline_state={"state": "offline", "at": utc_now().isoformat()})
        for scanner in self.scanners:
            scanner.close()
        self.board.close()
        if self.tanks is not None:
            self.tanks.gauge.close()
        self.payments.close()
        self.journal.close()
        self.command_store.close()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()

    def next_wait_s(self) -> float:
        busy = any(p.session is not None or p.state in (ps.STOPPING, ps.RECOVERING) for p in self.pumps.values())
        return BUSY_WAIT_S if busy or self.payments.wants_tick() else IDLE_WAIT_S

    def step(self, timeout_s: float | None = None) -> None:
        self.board.keep_alive()
        if timeout_s is None:
            timeout_s = self.next_wait_s()
        try:
            event = self.events.get(timeout=timeout_s)
        except queue.Empty:
            event = None
        if event is not None:
            try:
                self._dispatch(event)
            except Exception:  # a bug in one event must not stop the station
                log.exception("event %s failed", type(event).__name__)  # not its repr: a scan holds a QR
        # Every timer and callback is guarded too: a full disk or a bug in one of them
        # must not kill the loop (and with it the relay board's heartbeat).
        self._guarded("timers", self._timers)
        self._guarded("live view", self._live_tick)
        self._guarded("payments", self.payments.tick)
        if self._guarded("outbox", lambda now: self.outbox.pump(now, self.link.publish)):
            killpoint("published")

    def _guarded(self, name: str, work: Callable[[float], Any]) -> Any:
        try:
            return work(time.monotonic())
        except Exception:
            now = time.monotonic()
            if now - self._loop_errors.get(name, -3600.0) >= 60.0:  # once a minute, not 10 times a second
                self._loop_errors[name] = now
                log.exception("%s failed (the loop goes on)", name)
            return None

    # --- recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        """Sessions a crash left open are closed as interrupted, with the litres the board
        counted for them; nothing is re-authorised.

        The board ends every running fill when the host says hello (so the relay is open
        before any scan is taken) and keeps the last authorisation's pulse count, which
        the agent asks for with QUERY until it has it."""
        for session in self.journal.open_sessions():
            pump = self.pumps.get(session.pump)
            if pump is None or pump.session is not None:
                self._close(session, 0, "interrupted_pump_removed", notify=False)
                continue
            pump.session = session
            self._set_state(pump, ps.RECOVERING)
            pump.opened_mono = time.monotonic()

    def _query_recovering(self, now: float) -> None:
        for pump in self.pumps.values():
            asking = pump.state == ps.RECOVERING or pump.verify_after_hello
            if asking and self.board_connected and now - pump.last_query_mono >= 1.0:
                pump.last_query_mono = now
                self.board.query(pump.config.key)

    def _recovered(self, pump: ps.PumpRuntime, status: BoardStatus) -> None:
        session = pump.session
        assert session is not None
        if status.active:
            return  # the device is still ending that fill; its END closes the session
        if status.auth_id == session.seq:
            self._close(session, self._ml(pump, status.pulses), "interrupted_by_restart")
            return
        # The device does not know this session (it never got the authorisation, rebooted,
        # or, like a DART pump, has no session ids): its own totaliser, journaled when the
        # session opened, tells what flowed since.
        before = session.device_total_before
        if status.totaliser < 0 and before is not None and time.monotonic() - pump.opened_mono < 10:
            return  # totals not read yet; the next QUERY brings them
        if before is not None and status.totaliser >= before:
            self._close(session, self._ml(pump, status.totaliser - before), "interrupted_by_restart")
            return
        if status.pulses or (before is not None and status.totaliser >= 0):
            self._emit({"type": "alert", "pump": pump.config.number, "alert": "recovery_unverified",
                        "detail": f"{session.tx_id}: device count {status.pulses}, totaliser {status.totaliser}"
                                  f" (journaled {before}); closed with 0, check the pump's totals"})
        self._close(session, 0, "interrupted_by_restart")

    # --- dispatch ----------------------------------------------------------------------

    def _dispatch(self, event: object) -> None:
        if isinstance(event, PumpScan):
            try:
                self._scanner_event(event.pump, event.event)
            except Exception:
                # Never leave the attendant without an answer; nothing was authorised.
                log.exception("scan on pump %d failed", event.pump)
                self._refuse(self.pumps[event.pump], Decision(False, "internal_error"))
        elif isinstance(event, Incoming):
            self._incoming(event)
        elif isinstance(event, LinkState):
            self.devices.seen("broker", event.connected)
            self.usage.on_link(event.connected, self._read_clock().quota_day, time.monotonic())
            if event.connected:
                self.outbox.restart()
                self._publish_state()
                self.live.publish_all(time.monotonic())
                if self.attendants is not None:
                    self.attendants.publish_all()
                self._announce_to_home_assistant()
        elif isinstance(event, BoardEvent):
            self._board_event(event)
        elif isinstance(event, IslandEdc):
            if isinstance(event.event, EdcLink):
                self.devices.seen("EDC terminal", event.event.connected)
            self.payments.on_event(event)
        elif isinstance(event, PaymentSelect):
            self.payments.select(event.pump, event.choice)
        elif isinstance(event, SyncEvent):
            self._allowlist_event(event)
        elif isinstance(event, GaugeEvent) and self.tanks is not None:
            self.tanks.on_event(event)
        elif isinstance(event, CloseShift) and self.tanks is not None:
            self.tanks.close_shift_now()
        elif isinstance(event, UpdateEvent) and self.updates is not None:
            self.updates.on_event(event)

    def _emit(self, event: dict[str, Any]) -> None:
        event.setdefault("station", self.config.station_id)
        event.setdefault("at", utc_now().isoformat())
        for listener in self.listeners:
            listener(event)
        if event.get("type") == "alert":
            self.live.alert(event)
        elif event.get("type") == "receipt":  # a payment settled: the dashboard's list follows it
            self.live.payment(str(event["tx_id"]), event["payment"])
        self.link.publish(topics.event(self.config.station_id), json.dumps(event).encode(), qos=0)

    def _say(self, key: str, pump: int, **kw: Any) -> None:
        if kw.get("plate"):  # stdout ends in journald: full plates only on the attendant's page
            kw["plate"] = at_rest(kw["plate"])  # a one-digit number too
        self.on_line(attendant_line(self.config.lang, key, pump=pump, **kw))

    def _set_state(self, pump: ps.PumpRuntime, new: str) -> bool:
        if new == pump.state:
            return True
        try:
            ps.check_transition(pump.state, new)
        except ps.IllegalTransition:
            log.error("pump %d: illegal transition %s -> %s refused", pump.config.number, pump.state, new)
            return False
        pump.state = new
        self._emit({"type": "pump_state", "pump": pump.config.number, "state": new})
        self.show_pump(pump)
        return True

    def _read_clock(self) -> ClockReading:
        reading = self.clock.read(utc_now(), time.monotonic())
        if bool(reading.since_day) != self._clock_provisional:  # agent/clock.py: the certain time
            self._clock_provisional = bool(reading.since_day)
            self._emit({"type": "alert", "alert": "clock_provisional" if reading.since_day else "clock_confirmed",
                        "detail": f"quota day {reading.quota_day} not confirmed by headquarters' time: "
                                  f"usage since {reading.since_day} counts against it" if reading.since_day
                                  else f"quota day {reading.quota_day} confirmed"})
        if reading.trusted != self._clock_trusted:
            self._clock_trusted = reading.trusted
            if not reading.trusted:
                self.on_line(attendant_line(self.config.lang, "clock_untrusted", pump=0,
                                            day=reading.quota_day))
            self._emit({"type": "alert", "alert": "clock_untrusted" if not reading.trusted else "clock_trusted",
                        "detail": f"wall clock {reading.now.isoformat()}, floor {self.clock.floor.isoformat()}"})
        return reading

    # --- scans -------------------------------------------------------------------------

    def _scanner_event(self, pump_no: int, event: ScannerEvent) -> None:
        pump = self.pumps[pump_no]
        if isinstance(event, ScannerState):
            pump.scanner_connected = event.connected
            self.devices.seen(f"scanner pump {pump_no}", event.connected)
            return
        if isinstance(event, ScanError):
            self._refuse(pump, Decision(False, "unknown_qr"), f"scanner:{event.reason}")
            return
        if isinstance(event, ScannerNotice):  # a camera lost or in the dark: tell the attendant
            log.warning("scanner on pump %d: %s", pump_no, event.reason)
            self._say(f"scanner_{event.reason}", pump_no)
            self._emit({"type": "alert", "pump": pump_no, "alert": f"scanner_{event.reason}"})
            return
        assert isinstance(event, ScanRead)
        now = time.monotonic()
        last_text, last_at = pump.last_scan
        pump.last_scan = (event.text, now)
        if event.text == last_text and now - last_at < self.config.timeouts.duplicate_scan_s:
            return  # the same code read twice in a row: one scan, not two
        self.scan(pump_no, event.text, payment=self.payments.take_choice(pump_no))

    def scan(self, pump_no: int, text: str, requested_ml: int | None = None,
             payment: PaymentChoice | None = None, prepaid: int | None = None,
             nozzle: int | None = None) -> Decision:
        """`payment`: how the customer pays (cash by default). `prepaid`: the payment id
        of an approved prepayment this scan authorises (the desk's second pass). `nozzle`:
        the logical nozzle lifted on a multi-grade pump (agent/grades.py)."""
        pump = self.pumps[pump_no]
        if nozzle is None and pump.nozzle_up:
            nozzle = pump.lifted
        product = grades.nozzle_product(pump.config, nozzle or 0) or pump.config.product
        if nozzle is None and grades.multi_grade(pump.config):
            nozzle = 0  # before the lift: decide per grade, authorise on the lift
        ident = identify(text, self.token_keys, legacy_salt_of(self.docs.allowlist))
        vehicle_id = ident.vehicle_id
        payment = payment or CASH
        busy = self._pump_refusal(pump, vehicle_id, prepaid)
        if busy is not None:
            return self._refuse(pump, busy)
        if ident.reason:  # forged, unknown key, altered plate, or not a vehicle QR at all
            return self._refuse(pump, Decision(False, ident.reason), ident.detail, plate=ident.plate)
        clock = self._read_clock()
        day = clock.quota_day
        barred = token_refusal(self.docs.policy, vehicle_id, ident.issued, ident.legacy,
                               dt.date.fromisoformat(day))
        if barred:  # legacy texts switched off, a token too old or revoked by a reissue
            return self._refuse(pump, Decision(False, barred, vehicle_id=vehicle_id), plate=ident.plate)
        if nozzle == 0:
            return self._await_lift(pump, text, ident.plate, requested_ml, payment, clock)
        used, reserved = (0, 0) if vehicle_id is None else self._quota_used(vehicle_id, product, clock)
        decision = decide(vehicle_id, product, self.docs.allowlist, self.docs.policy,
                          used + reserved, requested_ml, clock.effective, self.config.freeze,
                          self.usage.elsewhere(vehicle_id, product, day), ident.legacy)
        self._check_freeze(clock.effective)
        if not decision.ok:
            return self._refuse(pump, decision, plate=ident.plate, product=product)
        blocked = self._sale_blocked(pump, decision, ident.plate, text, product, payment, prepaid)
        if blocked is not None:
            return blocked
        plate = ident.plate or (decision.vehicle.plate if decision.vehicle else "UNREGISTERED")
        return self._authorise(pump, decision, plate, product, day, used, requested_ml, payment, prepaid)

    def _quota_used(self, vehicle_id: int, product: str, clock: ClockReading) -> tuple[int, int]:
        """(used, reserved) against this quota day: the usage of every day since the certain
        day when the day is provisional (a boot whose clock nobody confirmed, agent/clock.py)."""
        used = reserved = 0
        for day in clock.usage_days:
            u, r = self.journal.quota_used(vehicle_id, product, day)
            used, reserved = used + u, reserved + r
        return used, reserved

    def _pump_refusal(self, pump: ps.PumpRuntime, vehicle_id: int | None, prepaid: int | None) -> Decision | None:
        """Why this pump cannot take a scan now, whoever the customer is (None: it can)."""
        if (pump.session is not None or pump.state in ps.WITH_SESSION
                or (prepaid is None and self.payments.busy(pump.config.number))):
            return Decision(False, PUMP_BUSY, vehicle_id=vehicle_id)
        if pump.out_of_service:
            return Decision(False, "pump_out_of_service", vehicle_id=vehicle_id)
        if not self.board_connected or pump.state == ps.INOPERATIVE:
            return Decision(False, PUMP_UNAVAILABLE, vehicle_id=vehicle_id)
        if self.board.totals_required and pump.device_total is None:
            # Without the pump's totaliser journaled first, a crash mid-fill could lose litres.
            self.board.query(pump.config.key)
            return Decision(False, PUMP_UNAVAILABLE, vehicle_id=vehicle_id)
        if pump.state == ps.CLOSED:
            return Decision(False, "pump_closed", vehicle_id=vehicle_id)
        if pump.config.number in self.locked:
            return Decision(False, "pump_locked", vehicle_id=vehicle_id)
        if vehicle_id is not None:
            for other in self.pumps.values():
                if other.session is not None and other.session.vehicle_id == vehicle_id:
                    vehicle = self.docs.allowlist.lookup(vehicle_id) if self.docs.allowlist else None
                    return Decision(False, VEHICLE_BUSY, vehicle, vehicle_id)
        return None

    def _sale_blocked(self, pump: ps.PumpRuntime, decision: Decision, token_plate: str, text: str, product: str,
                      payment: PaymentChoice, prepaid: int | None) -> Decision | None:
        """An eligible customer the station still cannot serve now (disk, terminal), or a
        prepayment sent to the terminal first: the decision to return, else None."""
        if not self.disk.check().sales_allowed:  # refused only when the sale could not be journaled
            reason = "disk_read_only" if self.disk.state.level == disk_guard.READ_ONLY else "disk_full"
            return self._refuse(pump, Decision(False, reason, decision.vehicle, decision.vehicle_id),
                                disk_guard.describe(self.disk.state), plate=token_plate)
        assert self.docs.policy is not None and decision.vehicle_id is not None
        if prepaid is None and payment.electronic:
            if not self.payments.available_for(pump.config.number):  # the terminal is off or unplugged: cash is offered
                return self._refuse(pump, Decision(False, "edc_unavailable", decision.vehicle, decision.vehicle_id),
                                    plate=token_plate)
            if payment.mode == "prepay":
                price = self.docs.policy.prices_idr.get(product, 0)
                charge, ml = prepay_charge(payment, price, pump.config.pulses_per_litre, decision.preset_ml)
                if charge <= 0:
                    return self._refuse(pump, Decision(False, "amount_too_small", decision.vehicle,
                                                       decision.vehicle_id), plate=token_plate)
                self.payments.start_prepay(pump.config.number, text, payment, charge, ml)
                return decision
        return None

    def _authorise(self, pump: ps.PumpRuntime, decision: Decision, plate: str, product: str, day: str, used: int,
                   requested_ml: int | None, payment: PaymentChoice, prepaid: int | None) -> Decision:
        """Journal first (fsync), relay second: a crash between the two leaves a session
        that recovery closes, never fuel that no record knows of."""
        assert self.docs.policy is not None and decision.vehicle_id is not None
        pump_no = pump.config.number
        preset_pulses = decision.preset_ml * pump.config.pulses_per_litre // 1000
        preset_ml = preset_pulses * 1000 // pump.config.pulses_per_litre
        extra = (self.payments.link_prepaid(prepaid) if prepaid is not None
                 else self.payments.postpay_with_session(pump_no, payment, preset_ml) if payment.electronic
                 else None)
        try:
            session = self.journal.open_session(
                self.config.station_id, pump_no, decision.vehicle_id, plate, product, day,
                decision.limit_ml, used, preset_ml, self.docs.policy.prices_idr.get(product, 0),
                pump.device_total, extra=extra,
            )
        except Exception as exc:
            if not disk_guard.is_disk_error(exc):
                raise
            log.error("journal cannot be written, sale refused: %s", exc)
            return self._refuse(pump, Decision(False, "journal_unwritable", decision.vehicle, decision.vehicle_id),
                                str(exc), plate=plate)
        self._relay_on(pump, session, product, preset_pulses)
        self._announce_authorised(pump, session, decision, plate, product, preset_ml, requested_ml)
        return decision

    def _relay_on(self, pump: ps.PumpRuntime, session: SessionRow, product: str, preset_pulses: int) -> None:
        pump.session = session
        pump.opened_mono = time.monotonic()
        pump.pulses = 0
        pump.stop_sent_mono = 0.0
        pump.pending = None
        pump.cap_ml = None
        killpoint("session_journaled")
        multi = grades.multi_grade(pump.config)
        select_nozzles = getattr(self.board, "select_nozzles", None)
        if multi and select_nozzles is not None:  # only the nozzle of the grade decided for
            select_nozzles(pump.config.key, (grades.nozzle_of(pump.config, product),))
        self.board.authorize(pump.config.key, session.seq, preset_pulses)
        killpoint("authorize_sent")
        # The state event and the dashboard's view after the relay command, not before:
        # the customer waits on the relay, not on our publishes (one loop: nothing between).
        self._set_state(pump, ps.AUTHORISED)
        if multi and pump.nozzle_up and grades.nozzle_product(pump.config, pump.lifted) == product:
            self._start_fuelling(pump)  # the nozzle was out before the authorisation

    def _announce_authorised(self, pump: ps.PumpRuntime, session: SessionRow, decision: Decision, plate: str,
                             product: str, preset_ml: int, requested_ml: int | None) -> None:
        """Headquarters' reservation, the attendant's line, the event and the page."""
        assert self.docs.policy is not None
        pump_no = pump.config.number
        self.usage.opened(session, self.link.connected)
        wanted = self.docs.policy.max_fill_ml if requested_ml is None else requested_ml
        code = ("ok_offline" if decision.offline else "ok_offline_share" if decision.share_capped
                else "ok_elsewhere" if decision.elsewhere_ml else "ok_capped" if preset_ml < wanted else "ok")
        self._say(code, pump_no, plate=plate, product=product, remaining_ml=decision.remaining_ml,
                  preset_ml=preset_ml, elsewhere_ml=decision.elsewhere_ml)
        event = {"type": "decision", "pump": pump_no, "ok": True, "reason": "", "code": code,
                 "tx_id": session.tx_id, "plate": mask_plate(plate), "product": product,
                 "preset_ml": preset_ml, "remaining_ml": decision.remaining_ml,
                 "elsewhere_ml": decision.elsewhere_ml}
        self._emit(event)
        self._decided(event, plate, decision)

    def _open_prepaid(self, pump_no: int, text: str, preset_ml: int, pay_id: int) -> bool:
        """An approved prepayment: authorise the pump for what it bought (the quota is
        checked again: it may have moved while the customer typed the PIN)."""
        return self.scan(pump_no, text, requested_ml=preset_ml, prepaid=pay_id).ok and (
            self.pumps[pump_no].session is not None)

    def _queue_record(self, db: Any, record: dict[str, Any]) -> None:
        insert_outbox(db, record["tx_id"], topics.tx(self.config.station_id), self._signed(record))

    def _signed(self, record: dict[str, Any]) -> dict[str, Any]:
        return record if self.station_key is None else sign_record(record, self.station_key)

    def _refuse(self, pump: ps.PumpRuntime, decision: Decision, detail: str = "", plate: str = "",
                product: str = "") -> Decision:
        vehicle = decision.vehicle
        plate = plate or (vehicle.plate if vehicle else "")  # a signed token's plate first
        product = product or pump.config.product
        self._say(decision.reason, pump.config.number, plate=plate,
                  product=product, used_ml=decision.used_ml, limit_ml=decision.limit_ml,
                  zone=self.config.zone, elsewhere_ml=decision.elsewhere_ml, detail=detail)
        event = {"type": "decision", "pump": pump.config.number, "ok": False,
                 "reason": decision.reason, "code": decision.reason, "detail": detail,
                 "plate": mask_plate(plate) if plate else "",
                 "product": product, "preset_ml": 0,
                 "remaining_ml": decision.remaining_ml, "elsewhere_ml": decision.elsewhere_ml}
        self._emit(event)
        self._decided(event, plate, decision)
        return decision

    def _decided(self, event: dict[str, Any], plate: str, decision: Decision) -> None:
        """After each decision: the attendant's page (full plate) and the scanner's beep."""
        pump_no = int(event["pump"])
        if self.attendants is not None:
            category = decision.vehicle.category if decision.vehicle else ""
            self.attendants.decision(event, plate, category, decision.used_ml, decision.limit_ml)
        command = self.config.scanner_beep[0 if event["ok"] else 1]
        scanner = self.scanners[self.config.pumps.index(self.pumps[pump_no].config)]
        if command and isinstance(scanner, SerialScanner):
            scanner.send(command)  # a serial scanner that beeps on command (good or bad read)

    # --- the attendant's page (agent/attendant/desk.py StationActions) -----------------

    def attendant_scan(self, pump: int, text: str) -> None:
        """A phone camera's read: the same path, checks and duplicate rule as a scanner's."""
        self._scanner_event(pump, ScanRead(text, "]Q1"))

    def attendant_pay(self, pump: int, choice: PaymentChoice) -> str:
        """This customer's payment: for the fill running now (postpay, not yet paid
        electronically) or else for the next scan on the pump."""
        session = self.pumps[pump].session
        if (session is not None and choice.electronic and choice.mode == "postpay" and self.payments.available_for(pump)
                and self.payment_for_tx(session.tx_id) is None):
            self.payments.open_postpay(session, choice)
            return "this_fill"
        self.payments.select(pump, choice)
        return "next"

    def attendant_stop(self, pump: int) -> bool:
        runtime = self.pumps[pump]
        if runtime.session is None or runtime.state not in (ps.AUTHORISED, ps.FUELLING):
            return False
        self._request_stop(runtime)
        return True

    def pump_running(self, pump: int) -> bool:
        return self.pumps[pump].session is not None

    def totaliser_ml(self, pump: int) -> int | None:
        runtime = self.pumps[pump]
        if runtime.device_total is None:
            if self.board_connected:
                self.board.query(runtime.config.key)  # its answer brings the totaliser
            return None
        return self._ml(runtime, runtime.device_total)

    def payment_for_tx(self, tx_id: str) -> dict[str, Any] | None:
        return self.payments.payment_for_tx(tx_id)

    def _price(self, product: str) -> int:
        return self.docs.policy.prices_idr.get(product, 0) if self.docs.policy else 0

    # --- multi-grade pumps (agent/grades.py) ---------------------------------------------

    def _await_lift(self, pump: ps.PumpRuntime, text: str, plate: str, requested_ml: int | None,
                    payment: PaymentChoice | None, clock: ClockReading) -> Decision:
        """A scan before the lift on a multi-grade pump: decide each grade, remember the
        eligible ones; the lift of one of them opens the session."""
        ident = identify(text, self.token_keys, legacy_salt_of(self.docs.allowlist))
        decisions = []
        for product in pump.config.nozzle_products:
            used, reserved = ((0, 0) if ident.vehicle_id is None else
                              self._quota_used(ident.vehicle_id, product, clock))
            decisions.append(decide(ident.vehicle_id, product, self.docs.allowlist, self.docs.policy,
                                    used + reserved, requested_ml, clock.effective, self.config.freeze,
                                    self.usage.elsewhere(ident.vehicle_id, product, clock.quota_day)))
        self._check_freeze(clock.effective)
        eligible = tuple(p for p, d in zip(pump.config.nozzle_products, decisions, strict=True) if d.ok)
        if not eligible:
            return self._refuse(pump, grades.refusal(decisions), plate=plate)
        first = decisions[pump.config.nozzle_products.index(eligible[0])]
        plate = plate or (first.vehicle.plate if first.vehicle else "UNREGISTERED")
        pump.pending = grades.PendingLift(text, payment, requested_ml, eligible, plate, time.monotonic())
        labels = " / ".join(PRODUCT_LABELS[p] for p in eligible)
        self._say("lift_nozzle", pump.config.number, plate=plate, product=labels)
        event = {"type": "decision", "pump": pump.config.number, "ok": True, "reason": "",
                 "code": "lift_nozzle", "plate": mask_plate(plate), "product": eligible[0],
                 "products": list(eligible), "preset_ml": 0, "remaining_ml": first.remaining_ml}
        self._emit(event)
        self._decided(event, plate, first)
        return first

    def _lifted(self, pump: ps.PumpRuntime, nozzle: int) -> None:
        """A nozzle came out on a multi-grade pump: open the waiting scan's session for its
        grade, or refuse a grade the vehicle may not have (nothing is authorised for it)."""
        pending = pump.pending
        product = grades.nozzle_product(pump.config, nozzle)
        if pending is not None and pump.session is None:
            if product in pending.products:
                pump.pending = None
                self.scan(pump.config.number, pending.text, pending.requested_ml, pending.payment, nozzle=nozzle)
                return
            self._wrong_grade(pump, product or "?", pending.plate, pending.products)
        elif pump.session is not None and product != pump.session.product:
            self._wrong_grade(pump, product or "?", pump.session.plate, (pump.session.product,))

    def _wrong_grade(self, pump: ps.PumpRuntime, product: str, plate: str, allowed: tuple[str, ...]) -> None:
        self._refuse(pump, Decision(False, "wrong_grade"), " / ".join(PRODUCT_LABELS[p] for p in allowed),
                     plate=plate, product=product)

    def _push_prices(self) -> None:
        """Unit prices per nozzle from the signed policy, to pumps that display them."""
        set_prices = getattr(self.board, "set_prices", None)
        policy = self.docs.policy
        if set_prices is None or policy is None or not self.board_connected:
            return
        for pump in self.pumps.values():
            prices = [policy.prices_idr.get(p, 0) for p in pump.config.nozzle_products]
            if all(prices):
                set_prices(pump.config.key, prices)

    def _pump_online(self, pump: ps.PumpRuntime, online: bool) -> None:
        """A pump on a shared line stopped answering (out of service) or came back."""
        if pump.out_of_service == (not online):
            return
        pump.out_of_service = not online
        number = pump.config.number
        if not online:
            pump.pending = None
            if pump.state in (ps.IDLE, ps.CALLING):
                self._set_state(pump, ps.INOPERATIVE)
            elif pump.state in (ps.AUTHORISED, ps.FUELLING):
                self._request_stop(pump)  # goes out first when it answers; its head stops by itself
            self._emit({"type": "alert", "pump": number, "alert": "pump_out_of_service",
                        "detail": f"pump {number} does not answer on its line; polled slowly until it does"})
        else:
            if pump.state == ps.INOPERATIVE and self.board_connected:
                self._set_state(pump, ps.after_session(pump.nozzle_up))
        self.show_pump(pump)

    # --- board -------------------------------------------------------------------------

    def _pump_for_channel(self, channel: int) -> ps.PumpRuntime | None:
        number = self._by_channel.get(channel)
        return None if number is None else self.pumps[number]

    def _board_event(self, event: BoardEvent) -> None:
        if isinstance(event, BoardLink):
            self._board_link(event)
        elif isinstance(event, BoardHello):
            self._board_hello(event)
        elif isinstance(event, CommandLost):
            lost_on = self._pump_for_channel(event.channel)
            if lost_on is not None and lost_on.state in (ps.AUTHORISED, ps.FUELLING):
                self._request_stop(lost_on)
        elif isinstance(event, FirmwareResult):
            return  # a firmware update's answer (agent/updates/firmware.py runs before we open the board)
        else:
            pump = self._pump_for_channel(event.channel)
            if pump is None:
                return
            if isinstance(event, PumpOnline):
                self._pump_online(pump, event.online)
            elif isinstance(event, NozzleChange):
                self._nozzle_change(pump, event)
            elif isinstance(event, BoardStatus):
                self._board_status(pump, event)
            elif isinstance(event, BoardEnd):
                self._board_end(pump, event)
            elif isinstance(event, BoardFault):
                self.on_line(f"ALARM pompa {pump.config.number}: aliran tanpa otorisasi (kode {event.code})")
                self._emit({"type": "alert", "pump": pump.config.number, "alert": "unauthorised_flow",
                            "code": event.code})

    def _board_link(self, event: BoardLink) -> None:
        self.board_connected = event.connected
        self._push_prices()
        self.devices.seen("pump controller", event.connected)
        for each in self.pumps.values():
            if event.connected and each.state == ps.INOPERATIVE and not each.out_of_service:
                self._set_state(each, ps.after_session(each.nozzle_up))
            elif not event.connected and each.state in (ps.IDLE, ps.CALLING):
                self._set_state(each, ps.INOPERATIVE)

    def _board_hello(self, event: BoardHello) -> None:
        if self.updates is not None:
            self.updates.on_board_hello(event.firmware)
        # The board (re)booted with every relay open. A HELLO can also be read late
        # (it waited in the UART buffer), so ask the board which sessions it still
        # knows instead of closing them on sight.
        for running in self.pumps.values():
            if running.session is not None and running.state != ps.RECOVERING:
                running.verify_after_hello = True
                running.last_query_mono = 0.0

    def _nozzle_change(self, pump: ps.PumpRuntime, event: NozzleChange) -> None:
        pump.nozzle_up = event.up
        pump.lifted = event.nozzle if event.up else 0
        if event.up and grades.multi_grade(pump.config):
            self._lifted(pump, event.nozzle)
        right_grade = pump.session is not None and (
            grades.nozzle_product(pump.config, event.nozzle) in (None, pump.session.product)
            if grades.multi_grade(pump.config) else True)
        if event.up and pump.state == ps.AUTHORISED and pump.session is not None and right_grade:
            self._start_fuelling(pump)
        elif event.up and pump.state == ps.IDLE:
            self._set_state(pump, ps.CALLING)
        elif not event.up and pump.state == ps.CALLING:
            self._set_state(pump, ps.IDLE)

    def _board_status(self, pump: ps.PumpRuntime, event: BoardStatus) -> None:
        if event.totaliser >= 0:
            pump.device_total = event.totaliser
        if event.nozzle_totals:
            pump.nozzle_totals = event.nozzle_totals
        if pump.state == ps.RECOVERING and pump.session is not None:
            self._recovered(pump, event)
        elif pump.verify_after_hello and pump.session is not None:
            pump.verify_after_hello = False
            if event.auth_id != pump.session.seq:
                # Counts after the last STATUS died with the board: flagged, not guessed.
                self._close(pump.session, self._ml(pump, pump.pulses), "board_reset")
        elif (pump.session is not None and event.auth_id == pump.session.seq
              and event.pulses != pump.pulses):
            pump.last_flow_mono = time.monotonic()
            pump.pulses = event.pulses
            self.show_pump(pump)
            self._check_cap(pump)

    def _board_end(self, pump: ps.PumpRuntime, event: BoardEnd) -> None:
        # A device whose END carries no totaliser (-1) gets a fresh reading before the
        # next session may rely on it.
        pump.device_total = event.totaliser if event.totaliser >= 0 else None
        if event.reason == "estop":
            self.on_line(attendant_line(self.config.lang, "estop", pump=pump.config.number))
            self._emit({"type": "alert", "pump": pump.config.number, "alert": "estop",
                        "detail": f"{format_litres(self._ml(pump, event.pulses), self.config.lang)} L"})
        if pump.session is not None and event.auth_id == pump.session.seq:
            reason = "interrupted_by_restart" if pump.state == ps.RECOVERING else event.reason
            self._close(pump.session, self._ml(pump, event.pulses), reason)
        else:
            log.warning("END for unknown authorisation %d on channel %d (%d pulses)",
                        event.auth_id, event.channel, event.pulses)

    def _start_fuelling(self, pump: ps.PumpRuntime) -> None:
        assert pump.session is not None
        # Not journaled: recovery closes an open session from the board's count whether fuel
        # flowed or not, so the state would only cost an SD-card write per fill.
        self._set_state(pump, ps.FUELLING)
        pump.last_flow_mono = time.monotonic()
        killpoint("fuelling")

    @staticmethod
    def _ml(pump: ps.PumpRuntime, pulses: int) -> int:
        return pulses * 1000 // pump.config.pulses_per_litre

    def _request_stop(self, pump: ps.PumpRuntime) -> None:
        self._set_state(pump, ps.STOPPING)
        pump.stop_sent_mono = time.monotonic()
        self.board.stop(pump.config.key)
        killpoint("stop_requested")

    def _timers(self, now: float) -> None:
        t = self.config.timeouts
        self._query_recovering(now)
        if self.updates is not None:
            self.updates.tick(now)
            self.exit_code = self.updates.exit_code
        if self.link.connected and now - self._last_heartbeat >= self.heartbeat_s:
            self._last_heartbeat = now
            self.link.publish(topics.heartbeat(self.config.station_id),
                              json.dumps(heartbeat(self, utc_now())).encode(), qos=0,
                              retain=True)  # a dashboard opened now sees the last one at once
        if self._pending_closes and now - self._close_retry_mono >= 2.0:
            self._close_retry_mono = now
            self._retry_closes()
        for pump in self.pumps.values():
            if pump.pending is not None and now - pump.pending.at > t.scan_to_nozzle_s:
                pump.pending = None  # nobody lifted a nozzle: the scan lapses, nothing was authorised
            if pump.session is None or pump.state == ps.RECOVERING or pump.session.seq in self._pending_closes:
                continue
            if pump.state == ps.STOPPING:
                if now - pump.stop_sent_mono > t.stop_confirm_s:
                    # The board never confirmed: its own dead-man has dropped the relay by now.
                    self._close(pump.session, self._ml(pump, pump.pulses), "board_unreachable")
                continue
            waited = now - pump.opened_mono
            no_nozzle = pump.state == ps.AUTHORISED and waited > t.scan_to_nozzle_s
            no_flow = pump.state == ps.FUELLING and now - pump.last_flow_mono > t.no_flow_s
            if no_nozzle or no_flow or waited > t.max_fill_s:
                self._request_stop(pump)

    # --- closing -----------------------------------------------------------------------

    def _close(self, session: SessionRow, dispensed_ml: int, reason: str, notify: bool = True) -> None:
        amount = amount_idr(dispensed_ml, session.price_idr)
        clock = self._read_clock()
        record = self._tx_record(session, dispensed_ml, amount, reason, clock)
        meta = {"last_trusted_day": self.clock.last_trusted_day or clock.quota_day}
        if time.monotonic() - self._floor_journaled >= FLOOR_EVERY_S:
            # A floor a minute old guards a reboot as well: not one more page per fill.
            floor = self.clock.floor_to_journal(clock)  # never a provisional (maybe forward) clock
            if floor is not None:
                meta["wall_floor"] = floor.isoformat()
            certain = self.clock.certain_json(time.monotonic())
            if certain is not None:
                meta["certain_time"] = certain
            self._floor_journaled = time.monotonic()
        keep = self.payments.on_close(session, dispensed_ml, amount, record)  # sets record["payment"]
        if self.attendants is not None:
            self.attendants.closed(record, render_receipt(record, self.config.lang))
        killpoint("before_close")
        queued = None if keep else (session.tx_id, topics.tx(self.config.station_id), self._signed(record))
        try:
            disk_guard.write_with_reserve(self.disk, lambda: self.journal.close_session(
                session, dispensed_ml, amount, reason, queued, meta, extra=keep))
        except Exception as exc:
            if not disk_guard.is_disk_error(exc):
                raise
            self._close_failed(session, dispensed_ml, reason, notify, exc)
            return
        self._pending_closes.pop(session.seq, None)
        killpoint("close_journaled")
        self.live.transaction(record)
        self.usage.closed(session, self.link.connected)
        pump = self.pumps.get(session.pump)
        if pump is not None and pump.session is not None and pump.session.seq == session.seq:
            pump.last_scan = ("", 0.0)  # the next read of any code is a new customer
            pump.session = None
            pump.stop_sent_mono = 0.0
            pump.verify_after_hello = False
            self._set_state(pump, ps.after_session(pump.nozzle_up))
            self.show_pump(pump)
        if notify:
            self._say("done", session.pump, plate=session.plate, product=session.product,
                      litres_ml=dispensed_ml, amount_idr=amount)
        self._emit({"type": "transaction", "pump": session.pump, "tx_id": session.tx_id,
                    "dispensed_ml": dispensed_ml, "amount_idr": amount, "end_reason": reason,
                    "product": session.product, "plate": mask_plate(session.plate)})

    def _close_failed(self, session: SessionRow, dispensed_ml: int, reason: str, notify: bool,
                      exc: BaseException) -> None:
        """The journal cannot take the close (disk full even without the reserve, or read-only):
        the session stays open, in memory and in the journal, and is retried; the pump takes
        no new sale meanwhile. A restart would close it from the board's count."""
        first = session.seq not in self._pending_closes
        self._pending_closes[session.seq] = (session, dispensed_ml, reason, notify)
        if first:
            log.error("%s: close not journaled (%s); retrying", session.tx_id, exc)
            self._say("close_pending", session.pump)
            self._emit({"type": "alert", "pump": session.pump, "alert": "journal_unwritable",
                        "detail": f"{session.tx_id}: {dispensed_ml} ml not yet journaled: {exc}"})

    def _retry_closes(self) -> None:
        for seq, (session, dispensed_ml, reason, notify) in list(self._pending_closes.items()):
            if seq in self._pending_closes:
                self._close(session, dispensed_ml, reason, notify)

    def _tx_record(self, s: SessionRow, dispensed_ml: int, amount: int, reason: str,
                   clock: ClockReading) -> dict[str, Any]:
        opened = dt.datetime.fromtimestamp(s.opened_at, dt.UTC)
        pump = self.pumps.get(s.pump)
        duration = time.monotonic() - pump.opened_mono if pump and pump.session == s else None
        if reason in ("nozzle_hung", "preset_reached"):
            final = "completed"
        elif dispensed_ml == 0:
            final = "cancelled"
        else:
            final = "interrupted"
        return {
            "schema": "spbu.tx/1",
            "tx_id": s.tx_id,
            "station": self.config.station_id,
            "pump": s.pump,
            "vehicle_id": str(s.vehicle_id),
            "plate_masked": mask_plate(s.plate),
            "product": s.product,
            "dispensed_ml": dispensed_ml,
            "preset_ml": s.preset_ml,
            "unit_price_idr": s.price_idr,
            "amount_idr": amount,
            "payment": cash_payment(amount),  # a card/QRIS payment replaces it when it settles
            "quota": {"day": s.quota_day, "limit_ml": s.limit_ml, "before_ml": s.quota_before_ml,
                      "after_ml": s.quota_before_ml + dispensed_ml},
            "times": {"opened_at": opened.isoformat(), "closed_at": clock.now.isoformat(),
                      "duration_s": None if duration is None else round(duration, 3),
                      "clock_trusted": clock.trusted},
            "end_reason": reason,
            "final_state": final,
            "allowlist_version": self.docs.allowlist.version if self.docs.allowlist else 0,
            "policy_version": self.docs.policy.version if self.docs.policy else 0,
            **({} if self.attendants is None else {"attendant": self.attendants.attendant_on(s.pump)}),
        }

    # --- headquarters ------------------------------------------------------------------

    def _incoming(self, message: Incoming) -> None:
        if self.attendants is not None and message.topic.startswith("att/"):
            self.attendants.handle(message.topic, message.payload)
        elif message.topic == homeassistant.BIRTH_TOPIC:
            if message.payload.strip() == b"online":
                self._announce_to_home_assistant()
        elif message.topic == topics.ALLOWLIST:
            self.report_update(self.docs.offer(ALLOWLIST_KIND, message.payload))
        elif message.topic == topics.POLICY:
            self.report_update(self.docs.offer(POLICY_KIND, message.payload))
        elif message.topic == topics.ack(self.config.station_id):
            self._ack(message.payload)
        elif message.topic == topics.command(self.config.station_id):
            self._command(message.payload)
        elif message.topic in (topics.usage(self.config.station_id), topics.USAGE_TICK):
            self._usage_batch(message.payload)

    # --- national quota: usage elsewhere (agent/usage_link.py) -----------------------------

    def _usage_batch(self, payload: bytes) -> None:
        try:
            self.docs.trust.check_fresh("usage")  # a stale feed shrinks sales to the offline share
        except TrustError as exc:
            log.warning("usage feed refused: %s", exc)
            return
        changed = self.usage.on_message(payload, self._read_clock().quota_day)
        if self.usage.last_issued is not None:  # signed by headquarters' usage role
            self._hq_time(self.usage.last_issued)
            self.usage.last_issued = None
        for pump in self.pumps.values():
            s = pump.session
            if s is not None and (s.vehicle_id, s.product) in changed:
                self._check_cap(pump)

    def _check_cap(self, pump: ps.PumpRuntime) -> None:
        """A fill in progress for a vehicle whose quota is being or was used elsewhere (a
        copied QR, or a first visit to this area) stops where the national quota ends."""
        s = pump.session
        if s is None or pump.state not in (ps.AUTHORISED, ps.FUELLING):
            return
        if pump.cap_ml is None:
            elsewhere = self.usage.elsewhere(s.vehicle_id, s.product, s.quota_day)
            pump.cap_ml = fill_cap(s, elsewhere)
            if pump.cap_ml is None:
                return
            self._say("stopped_elsewhere", s.pump, plate=s.plate, elsewhere_ml=elsewhere.total_ml if elsewhere else 0)
            self._emit({"type": "alert", "pump": s.pump, "alert": "quota_used_elsewhere", "tx_id": s.tx_id,
                        "detail": f"cap {pump.cap_ml} ml below preset {s.preset_ml} ml"})
        if self._ml(pump, pump.pulses) >= pump.cap_ml:
            self._request_stop(pump)

    def _ack(self, payload: bytes) -> None:
        """Only a signed acknowledgement deletes from the outbox, and only rows in flight."""
        try:
            self.docs.trust.check_fresh("acks")  # a sale stays in the outbox: resent, acknowledged later
            ack = verify_ack(payload, self.config.station_id, ack_keyring(self.docs.trust))
        except (AckRefused, TrustError) as exc:
            self.acks_refused += 1
            log.warning("acknowledgement refused: %s", exc)
            return
        self._hq_time(ack.at)
        if self.outbox.on_ack(list(ack.ids)):
            killpoint("ack_applied")

    def _hq_now(self) -> dt.datetime:
        """Headquarters' time as this station knows it: its signed time carried forward, else
        the local clock as judged (never behind what is proven past)."""
        mono = time.monotonic()
        return self.clock.estimate(mono) or self.clock.judged(utc_now(), mono)

    def _hq_time(self, moment: dt.datetime) -> None:
        """Headquarters' signed time (an acknowledgement, a usage tick): the clock's floor
        (bounded) and the anchor of its forward bound, saved at most every 10 minutes."""
        now = time.monotonic()
        if self.clock.observe_hq_time(moment, now, utc_now()) and (
                self._anchor_saved_mono is None or now - self._anchor_saved_mono > 600):
            self._anchor_saved_mono = now
            self.journal.set_meta("hq_anchor", self.clock.anchor_json())

    def _command(self, payload: bytes) -> None:
        reading = self._read_clock()
        # Nothing issued after the latest moment the station believes in passes (never behind
        # the floor or the certain time, even with the clock set back; headquarters' time if ahead).
        latest = reading.effective
        try:
            command = self.command_gate.admit(payload, reading.effective, latest)
        except CommandRejected as exc:
            log.warning("command refused: %s", exc)
            self._emit({"type": "command_rejected", "reason": exc.reason, "detail": exc.detail})
            return
        if not command.by_manager:  # signed by headquarters: surely past (a manager's tablet is not)
            self.clock.observe(command.issued, utc_now(), time.monotonic())
        ok, detail = execute(self, command)
        result = {"station": self.config.station_id, "command": command.name, "nonce": command.nonce,
                  "ok": ok, "detail": detail, "at": utc_now().isoformat()}
        self.link.publish(topics.command_result(self.config.station_id), json.dumps(result).encode(), qos=1)
        self._emit({"type": "command", "command": command.name, "ok": ok, "detail": detail,
                    "nonce": command.nonce})
        if ok and self.link.connected:
            self.publish_presence()

    def publish_presence(self) -> None:
        """Retained state and a heartbeat now (the request_state command)."""
        self._publish_state()
        self._last_heartbeat = 0.0

    # --- live view for the manager's dashboard ---------------------------------------------

    def show_pump(self, pump: ps.PumpRuntime) -> None:
        s = pump.session
        live = None if s is None else LiveSession(
            s.tx_id, mask_plate(s.plate), s.product, s.preset_ml, self._ml(pump, pump.pulses),
            dt.datetime.fromtimestamp(s.opened_at, dt.UTC).isoformat())
        state = "locked" if pump.config.number in self.locked else pump.state
        if pump.out_of_service and pump.session is None:
            state = "out_of_service"
        self.live.pump(pump.config.number, state, live, time.monotonic())
        if self.attendants is not None:
            self.attendants.pump(pump.config.number, state, live.dispensed_ml if live else None,
                                 s.tx_id if s else None, s.preset_ml if s else 0)

    def _expiry_conditions(self, mono: float) -> None:
        """Standing alarms judged by the guarded clock (a clock set back hides none of them)."""
        reading = self._read_clock()
        allowlist = self.docs.allowlist
        expired = allowlist is not None and reading.effective >= allowlist.expires
        self.live.condition("allowlist_expired", expired,
                            f"expired {allowlist.expires.isoformat()}" if allowlist is not None else "")
        self.live.condition("no_allowlist", allowlist is None, "no signed vehicle list received yet")
        root = self.docs.trust.root  # headquarters must publish the next root before this one expires
        self.live.condition("root_expired", reading.effective >= root.expires,
                            f"root of trust v{root.version} expired {root.expires.isoformat()}")
        lag = self.clock.lag(reading.effective, mono)  # agent/clock.py: grows with each offline reboot
        self.live.condition("clock_lag", lag > CLOCK_LAG_ALERT,
                            f"the certain time trails the clock by {lag.total_seconds() / 3600:.1f} h: "
                            f"for that long after each midnight, yesterday's litres count against today's "
                            f"quota, until headquarters' signed time comes (link, acknowledgement)")

    def _live_tick(self, now: float) -> None:
        self.live.tick(now)
        if now - self._conditions_mono < CONDITIONS_EVERY_S:
            return
        self._conditions_mono = now
        self._publish_station("sales/hourly", hourly(self.journal, self.config.zone, utc_now()), True)
        depth = self.journal.outbox_depth()
        self.live.condition("outbox_growing", depth >= OUTBOX_ALERT_DEPTH,
                            f"{depth} transactions not yet acknowledged by headquarters")
        self._expiry_conditions(now)
        self._disk_tick()
        certain = self.clock.certain_json(now)
        if certain is not None and now - self._floor_journaled >= CERTAIN_EVERY_S:  # no fill carried it lately
            self._floor_journaled = now
            self.journal.set_meta("certain_time", certain)
        self.retention.tick(now, utc_now().timestamp(), self._clock_trusted)
        self.devices.tick(now)
        self.status.update(snapshot(self))
        self.live.new_day(self._read_clock().quota_day)
        changed = self.usage.tick(now, self._read_clock().quota_day, self.link.connected)
        if changed is not None:
            stale, detail = changed
            self.live.condition("usage_feed_stale", stale, detail)
            self._say("usage_stale" if stale else "usage_fresh", 0)
            self._emit({"type": "alert", "alert": "usage_feed_stale" if stale else "usage_feed_fresh",
                        "detail": detail})

    def _disk_tick(self) -> None:
        """Free space and read-only alarms, before the disk is full: dashboard, event, attendant."""
        state = self.disk.refresh()
        if state.level != self._disk_alarmed:
            self._disk_alarmed = state.level
            alarm = "disk_ok" if state.level == disk_guard.OK else f"disk_{state.level}"
            (log.info if state.level == disk_guard.OK else log.warning)("data disk %s: %s", state.level,
                                                                          disk_guard.describe(state))
            self._say(f"{alarm}_alarm", 0, detail=disk_guard.describe(state))
            self._emit({"type": "alert", "alert": alarm, "detail": disk_guard.describe(state)})
        for level in (disk_guard.LOW, disk_guard.FULL, disk_guard.READ_ONLY):
            self.live.condition(f"disk_{level}", state.level == level, disk_guard.describe(state))

    def _publish_station(self, suffix: str, payload: dict[str, Any], retain: bool) -> None:
        """Manager's views under spbu/v1/<station>/: tanks, their history and reconciliation,
        litres per hour (docs/schemas/tanks*.schema.json, sales-hourly.schema.json)."""
        body = {"station": self.config.station_id, **payload}
        self.link.publish(f"spbu/v1/{self.config.station_id}/{suffix}", json.dumps(body).encode(), qos=1,
                          retain=retain)

    def _announce_to_home_assistant(self) -> None:
        pumps = {p.number: p.product for p in self.config.pumps}
        try:
            before = [int(n) for n in json.loads(self.journal.get_meta("ha_pumps") or "[]")]
        except (ValueError, TypeError):
            before = []
        for topic, payload in homeassistant.discovery(self.config.station_id, pumps, before):
            self.link.publish(topic, payload, qos=1, retain=True)
        if sorted(before) != sorted(pumps):
            self.journal.set_meta("ha_pumps", json.dumps(sorted(pumps)))

    def report_update(self, result: UpdateResult) -> None:
        if result.accepted:
            log.info("%s version %d installed", result.kind, result.version)
            for doc in (self.docs.allowlist, self.docs.policy):
                if doc is not None:
                    self.clock.observe(doc.created, utc_now(), time.monotonic())  # signed by headquarters: surely past
            self._emit({"type": "document", "kind": result.kind, "accepted": True,
                        "version": result.version, "detail": result.detail})
            if result.kind == POLICY_KIND:
                self._push_prices()
            if self.link.connected:
                self.publish_presence()  # the new version shows at once, not at the next beat
        elif result.detail != "already current":
            log.warning("%s rejected: %s", result.kind, result.detail)
            self._emit({"type": "alert", "alert": f"{result.kind}_rejected", "detail": result.detail})

    def _publish_state(self) -> None:
        state = {
            "state": "online",
            "version": __version__,
            "at": utc_now().isoformat(),
            "allowlist_version": self.docs.allowlist.version if self.docs.allowlist else 0,
            "policy_version": self.docs.policy.version if self.docs.policy else 0,
            "outbox_depth": self.journal.outbox_depth(),
            "pumps": pump_states(self),
            "allowlist_sync": {**self.allowlist_sync_state, "freeze": self._freeze_state},
        }
        self.link.publish(topics.state(self.config.station_id), json.dumps(state).encode(),
                          qos=1, retain=True)

    # --- signed allow-list sync (agent/allowlist/sync.py) --------------------------------

    def _allowlist_event(self, event: SyncEvent) -> None:
        if event.kind == "progress":
            self.allowlist_sync_state = {"state": "syncing", **event.progress()}
        elif event.kind == "installed":
            self.allowlist_sync_state = {"state": "installed", "version": event.version}
            self.report_update(self.docs.reload_allowlist())
            self.live.condition("allowlist_corrupt", self.docs.allowlist is None)
            self._check_freeze(utc_now())
        elif event.kind == "corrupt":  # re-hashed after boot: not what headquarters signed
            self.docs.drop_allowlist(event.version)
            self.allowlist_sync_state = {"state": "corrupt", "version": event.version, "check": event.check}
            detail = f"v{event.version} on disk: {event.detail}; fetching it again"
            self._emit({"type": "alert", "alert": "allowlist_corrupt", "check": event.check, "detail": detail})
        elif event.kind == "rejected":
            self.allowlist_sync_state = {"state": "rejected", "version": event.version, "check": event.check}
            self._emit({"type": "alert", "alert": "allowlist_rejected", "check": event.check,
                        "detail": event.detail})
        if self.link.connected:
            self._publish_state()

    def _check_freeze(self, now: dt.datetime) -> None:
        """Raise (once) the alarm for an expired list, and clear it when a fresh one comes."""
        allowlist = self.docs.allowlist
        state = FRESH if allowlist is None else self.config.freeze.state(now, allowlist.expires)
        if state != self._freeze_state:
            self._freeze_state = state
            self._emit({"type": "alert", "alert": "allowlist_frozen" if state != FRESH else "allowlist_fresh",
                        "detail": f"allow-list {state}; policy: {self.config.freeze.grace_h:g} h grace, "
                                  f"then {self.config.freeze.after_grace}"})
