"""A fleet of simulated stations in one process, for the national quota benchmark
(tests/bench/fleet.py): each station runs the station's own usage sync (agent/usage_link.py,
agent/national_usage.py), eligibility decision (agent/eligibility.py), journal and outbox
(agent/journal.py, agent/outbox.py, SQLite on disk), over one shared MQTT connection.

Time is compressed: one simulated quota day passes in `day_s` wall seconds, and the
stations' freshness clock runs on simulated seconds. Journals are group-committed as at a
station (agent/journal_sync.py: a close's record leaves once its commit is durable); the
benchmark may put them on a tmpfs (the SD card's fsync cost is the wear benchmark's).

The harness measures its own lag, so a reader can tell whether a figure is the design's or
the simulator's: how late each scheduled event ran (wall seconds behind its simulated
time), and how long each incoming message waited in this process before a station took it
in (its propagation is measured to that moment: counted at B, not merely delivered).

Pumps are not simulated byte by byte: a fill flows at a fixed rate from a nozzle-lift delay
on. Fills of copied QR codes used at several stations at once flow in real time (a real
fill takes a minute or more; compressing it would compare it with uncompressed network
delays).

    python -m simulators.fleet SPEC.json OUT.json
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import queue
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.eligibility import decide
from agent.journal import Journal, SessionRow
from agent.outbox import OutboxSender
from agent.trust.acks import AckRefused, ack_keyring, verify_ack
from agent.trust.documents import QuotaPolicy, Vehicle
from agent.trust.root import TrustStore, load_root
from agent.usage_link import UsageLink, fill_cap

PRODUCT = "solar"
FLOW_ML_PER_S = 40_000 / 60  # 40 L/min
REAL_NOZZLE_S = 8.0  # scan to nozzle lifted for real-time (copied QR) fills, wall seconds
SWITCH_INTERVAL_S = 0.001  # as the station (agent/station.py): the MQTT thread is not held back
SUBSCRIBE_CHUNK = 100  # topics per SUBSCRIBE packet
DURABLE = "$durable"  # inbox marker: a journal's group commit reached the disk


class Registry:
    """The allow-list as eligibility sees it (agent/documents.AllowListView)."""

    def __init__(self, categories: dict[int, str]) -> None:
        self.version = 1
        self.created = dt.datetime.now(dt.UTC)
        self.expires = self.created + dt.timedelta(days=7)
        self.categories = categories

    def lookup(self, vehicle_id: int) -> Vehicle | None:
        category = self.categories.get(vehicle_id)
        return None if category is None else Vehicle(vehicle_id, category, 0x02, "active", "B 1 SIM")


@dataclass
class Fill:
    session: SessionRow
    label: str
    want_ml: int
    flow_at: float  # clock (sim or wall) when fuel starts flowing
    real_time: bool
    stale: bool
    stop_ml: int  # preset, lowered by a cap
    scan_wall: float
    end_event: int = 0  # generation number: a rescheduled end cancels the earlier one


@dataclass
class SimStation:
    sid: str
    journal: Journal
    outbox: OutboxSender
    link: UsageLink
    connected: bool = True
    fills: dict[int, Fill] = field(default_factory=dict)  # vehicle id -> fill in progress
    watched: dict[int, dict[str, int]] = field(default_factory=dict)  # sampled vehicles: station -> ml seen
    bytes_in: int = 0  # the usage feed (batches and ticks)
    bytes_out: int = 0  # everything the station publishes (transactions, reservations, sync requests)
    bytes_ack: int = 0
    bytes_tick: int = 0
    msgs_in: int = 0
    entries_in: int = 0


class Fleet:
    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec = spec
        self.day = spec["day"]
        self.factor = 86_400 / float(spec["day_s"])
        self.t0_wall = 0.0
        root = load_root(bytes.fromhex(spec["root_hex"]))
        self.trust = TrustStore(root)
        self.policy = QuotaPolicy.from_body(self.trust.verify("policy", bytes.fromhex(spec["policy_hex"])))
        self.registry = Registry({int(k): v for k, v in spec["categories"].items()})
        self.inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        # Connected before the journals are opened: paho waits on its socket with select(),
        # which takes no file descriptor above 1023, and 500 journals in WAL mode use 1,500.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, bytes(m.payload), time.time()))
        self.connect(spec["host"], int(spec["port"]), list(spec["stations"]))
        self.sample_mod = int(spec.get("sample_mod", 10))
        # Scan to nozzle lifted, in wall seconds: network delays are not compressed, so neither
        # is this (a real one takes 10-20 s; a short one here is the harder case).
        self.nozzle_s = float(spec.get("nozzle_s", 2.0))
        # Flow of the real-time fills (copies): faster than a pump only shortens a small run,
        # and makes it stricter (a late answer lets more through).
        self.real_flow = float(spec.get("real_flow_ml_per_s", FLOW_ML_PER_S))
        self.stations: dict[str, SimStation] = {}
        journals = Path(spec.get("journal_dir") or workdir)
        for sid in spec["stations"]:
            directory = journals / sid
            directory.mkdir(parents=True, exist_ok=True)
            journal = Journal(directory / "journal.sqlite", group_commit=True, on_durable=self._durable(sid))
            self.stations[sid] = SimStation(sid, journal, OutboxSender(journal), UsageLink(
                sid, "WIB", self.trust, self._publisher(sid), lambda e: self.refusals.append(e),
                lambda: self.policy, clock=self.sim_now))
        self.events: list[tuple[float, int, str, dict[str, Any]]] = []
        self._n = 0
        self.log: list[dict[str, Any]] = []
        # vid, station A, ml, at B, wall delivered (MQTT thread), wall counted (merged at B)
        self.observations: list[tuple[str, str, int, str, float, float]] = []
        self.refusals: list[dict[str, Any]] = []
        self.lateness: list[float] = []  # per scheduled event: wall seconds it ran behind its time
        self.worst_by_hour = [0.0] * 25  # the worst of those per simulated hour (where it fell behind)
        self.inbox_wait: list[float] = []  # per incoming message: wall seconds queued in this process
        self.timeline: dict[str, float] = {}

    # --- clocks and MQTT -------------------------------------------------------------------

    def sim_now(self) -> float:
        return (time.monotonic() - self.t0_wall) * self.factor

    def _durable(self, sid: str) -> Callable[[], None]:
        return lambda: self.inbox.put((DURABLE, sid.encode(), time.time()))

    def _publisher(self, sid: str) -> Any:
        def publish(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
            station = self.stations.get(sid)
            if station is None or not station.connected:
                return False
            station.bytes_out += len(payload) + len(topic) + 4
            return self.client.publish(topic, payload, qos=qos).rc == mqtt.MQTT_ERR_SUCCESS
        return publish

    def connect(self, host: str, port: int, stations: list[str]) -> None:
        """One connection for all the process's stations, subscribed to exactly their topics
        (as each station is), so the broker sends this process only what its stations get.
        Subscribed after the CONNACK, in chunks (hundreds of subscriptions sent before it
        made paho drop the connection), and ready when every SUBACK is in."""
        wanted = [topics.USAGE_TICK] + [t for sid in stations for t in (topics.usage(sid), topics.ack(sid))]
        chunks = [wanted[i:i + SUBSCRIBE_CHUNK] for i in range(0, len(wanted), SUBSCRIBE_CHUNK)]
        pending: set[int] = set()
        lock = threading.Lock()
        ready = threading.Event()

        def subscribed(client: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
            with lock:
                pending.discard(mid)
                if not pending:
                    ready.set()

        def connected(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            with lock:
                for chunk in chunks:
                    pending.add(int(client.subscribe([(t, 1) for t in chunk])[1] or 0))

        self.client.on_subscribe = subscribed
        self.client.on_connect = connected
        self.client.connect(host, port, keepalive=60)
        self.client.loop_start()
        if not ready.wait(60):
            raise RuntimeError("the fleet's MQTT subscriptions were not accepted")

    # --- the schedule --------------------------------------------------------------------

    def at(self, when_s: float, kind: str, **data: Any) -> None:
        self._n += 1
        heapq.heappush(self.events, (when_s, self._n, kind, data))

    def load_schedule(self) -> None:
        for t, kind, sid, vid, want, label in self.spec["events"]:
            self.at(float(t), kind, station=sid, vid=int(vid), want=int(want), label=label)
        for sid, start, end in self.spec["partitions"]:
            if sid in self.stations:
                self.at(float(start), "cut", station=sid)
                self.at(float(end), "mend", station=sid)

    def run(self) -> None:
        started = time.monotonic()
        for station in self.stations.values():
            station.link.on_link(True, self.day, 0.0)
        deadline = time.monotonic() + float(self.spec.get("sync_wait_s", 120))
        while time.monotonic() < deadline and not all(s.link.national.synced for s in self.stations.values()):
            self._drain(0.05)
        self.t0_wall = time.monotonic()
        self.timeline["sync_s"] = round(self.t0_wall - started, 2)
        self.load_schedule()
        end = float(self.spec["day_s"]) + float(self.spec.get("tail_s", 10))
        # A loaded machine may fall behind the schedule: finish the day's events late rather
        # than drop them, within a bound (what is left is reported).
        hard_end = end + float(self.spec.get("overrun_s", 300))
        next_tick = 0.0
        while (time.monotonic() - self.t0_wall < end
               or (self.events and time.monotonic() - self.t0_wall < hard_end)):
            now_sim = self.sim_now()
            while self.events and self.events[0][0] <= now_sim:
                due, _, kind, data = heapq.heappop(self.events)
                if kind in ("scan", "end"):
                    late = (self.sim_now() - due) / self.factor
                    self.lateness.append(late)
                    hour = min(24, max(0, int(due // 3600)))
                    self.worst_by_hour[hour] = max(self.worst_by_hour[hour], late)
                self._event(kind, data)
            wall = time.monotonic()
            if wall >= next_tick:
                next_tick = wall + 1.0
                self._tick()
            wait = 0.02 if not self.events else max(0.0, min(0.02, (self.events[0][0] - now_sim) / self.factor))
            self._drain(wait)
        self.timeline["day_done_s"] = round(time.monotonic() - self.t0_wall, 2)

    def _tick(self) -> None:
        for station in self.stations.values():
            station.link.tick(self.sim_now(), self.day, station.connected)
            if station.connected and station.outbox.in_flight:
                station.outbox.pump(time.monotonic(), self._publish2(station))

    def _publish2(self, station: SimStation) -> Any:
        publish = self._publisher(station.sid)
        return lambda topic, payload: publish(topic, payload, 1, False)

    # --- events ---------------------------------------------------------------------------

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        station = self.stations[data["station"]]
        if kind == "scan":
            self._scan(station, data["vid"], data["want"], data["label"])
        elif kind == "end":
            fill = station.fills.get(data["vid"])
            if fill is not None and fill.end_event == data["gen"]:
                self._close(station, fill)
        elif kind == "cut":
            station.connected = False
            station.link.on_link(False, self.day, self.sim_now())
        elif kind == "mend":
            station.connected = True
            station.link.on_link(True, self.day, self.sim_now())
            station.outbox.restart()
            station.outbox.pump(time.monotonic(), self._publish2(station))

    def _scan(self, station: SimStation, vid: int, want: int, label: str) -> None:
        if vid in station.fills:
            self.log.append({"vid": vid, "station": station.sid, "label": label, "ok": False,
                             "reason": "vehicle_busy", "ml": 0, "stale": False, "wall": time.time()})
            return
        used, reserved = station.journal.quota_used(vid, PRODUCT, self.day)
        elsewhere = station.link.elsewhere(vid, PRODUCT, self.day)
        started = time.perf_counter()
        decision = decide(vid, PRODUCT, self.registry, self.policy, used + reserved, want,
                          dt.datetime.now(dt.UTC), None, elsewhere)
        decide_s = time.perf_counter() - started
        stale = bool(elsewhere and elsewhere.stale)
        entry = {"vid": vid, "station": station.sid, "label": label, "ok": decision.ok, "reason": decision.reason,
                 "ml": 0, "want": want, "limit": decision.limit_ml, "stale": stale, "wall": time.time(),
                 "decide_us": round(decide_s * 1e6, 1), "elsewhere": decision.elsewhere_ml}
        if not decision.ok:
            self.log.append(entry)
            return
        session = station.journal.open_session(station.sid, 1, vid, "B 1 SIM", PRODUCT, self.day, decision.limit_ml,
                                               used, decision.preset_ml, 6800, None)
        real = label == "copy"
        now = time.monotonic() if real else self.sim_now()
        fill = Fill(session, label, want, now + (REAL_NOZZLE_S if real else self.nozzle_s * self.factor), real, stale,
                    decision.preset_ml, time.time())
        fill.end_event = 1
        station.fills[vid] = fill
        station.link.opened(session, station.connected)
        if station.connected:  # the session row's sync covered any close held back: send it (as the station)
            station.outbox.pump(time.monotonic(), self._publish2(station))
        self.log.append(entry)
        self._schedule_end(station, fill)

    def _schedule_end(self, station: SimStation, fill: Fill) -> None:
        duration = min(fill.want_ml, fill.stop_ml) / (self.real_flow if fill.real_time else FLOW_ML_PER_S)
        if fill.real_time:
            end_sim = self.sim_now() + max(0.0, fill.flow_at + duration - time.monotonic()) * self.factor
        else:
            end_sim = fill.flow_at + duration
        self.at(end_sim, "end", station=station.sid, vid=fill.session.vehicle_id, gen=fill.end_event)

    def _flowed(self, fill: Fill) -> int:
        now = time.monotonic() if fill.real_time else self.sim_now()
        return int(max(0.0, now - fill.flow_at) * (self.real_flow if fill.real_time else FLOW_ML_PER_S))

    def _close(self, station: SimStation, fill: Fill) -> None:
        vid = fill.session.vehicle_id
        ml = max(0, min(fill.want_ml, fill.stop_ml, fill.session.preset_ml))
        s = fill.session
        record = {"schema": "spbu.tx/1", "tx_id": s.tx_id, "station": station.sid, "pump": 1,
                  "vehicle_id": str(vid), "plate_masked": "B * SIM", "product": PRODUCT, "dispensed_ml": ml,
                  "preset_ml": s.preset_ml, "unit_price_idr": 6800, "amount_idr": ml * 68 // 10,
                  "quota": {"day": self.day, "limit_ml": s.limit_ml, "before_ml": s.quota_before_ml,
                            "after_ml": s.quota_before_ml + ml},
                  "times": {"closed_at": dt.datetime.now(dt.UTC).isoformat()}, "end_reason": "nozzle_hung"}
        station.journal.close_session(s, ml, ml * 68 // 10, "nozzle_hung", (s.tx_id, topics.tx(station.sid), record))
        del station.fills[vid]
        station.link.closed(s, station.connected)
        station.outbox.pump(time.monotonic(), self._publish2(station))
        self.log.append({"vid": vid, "station": station.sid, "label": fill.label, "closed": True, "ml": ml,
                         "stale": fill.stale, "wall": time.time(), "after": s.quota_before_ml + ml,
                         "scan_wall": fill.scan_wall, "connected": station.connected})

    # --- incoming ---------------------------------------------------------------------------

    def _drain(self, wait_s: float) -> None:
        try:
            item = self.inbox.get(timeout=wait_s)
        except queue.Empty:
            return
        self._incoming(*item)
        for _ in range(5000):
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._incoming(*item)

    def _incoming(self, topic: str, payload: bytes, wall: float) -> None:
        self.inbox_wait.append(time.time() - wall)
        if topic == DURABLE:  # a close is on the disk: its record may leave (as the station's loop)
            durable = self.stations[payload.decode()]
            if durable.connected:
                durable.outbox.pump(time.monotonic(), self._publish2(durable))
            return
        if topic == topics.USAGE_TICK:
            for each in self.stations.values():
                if each.connected:
                    each.bytes_in += len(payload) + len(topic) + 4
                    each.bytes_tick += len(payload) + len(topic) + 4
                    each.link.on_message(payload, self.day)
            return
        station = self.stations.get(topic.rsplit("/", 1)[-1])
        if station is None or not station.connected:
            return  # partitioned: the message never reached it
        if topic.startswith(topics.USAGE_PREFIX):
            station.bytes_in += len(payload) + len(topic) + 4
            station.msgs_in += 1
            changed = station.link.on_message(payload, self.day)
            station.entries_in += len(changed)
            self._observe(station, changed, wall)
            for vid, _product in changed:
                fill = station.fills.get(vid)
                if fill is not None:
                    self._cap(station, fill)
        else:
            station.bytes_ack += len(payload) + len(topic) + 4
            try:  # as a station does: headquarters' signed acknowledgements only
                ack = verify_ack(payload, station.sid, ack_keyring(self.trust))
            except AckRefused:
                return
            station.outbox.on_ack(list(ack.ids))

    def _cap(self, station: SimStation, fill: Fill) -> None:
        cap = fill_cap(fill.session, station.link.elsewhere(fill.session.vehicle_id, PRODUCT, self.day))
        if cap is None or cap >= fill.stop_ml:
            return
        fill.stop_ml = max(cap, self._flowed(fill))  # what already flowed cannot be taken back
        fill.end_event += 1
        self._schedule_end(station, fill)

    def _observe(self, station: SimStation, changed: set[tuple[int, str]], wall: float) -> None:
        for vid, product in changed:
            if (vid >> 8) % self.sample_mod:
                continue
            known = station.link.national.known.get((vid, product))
            if known is None:
                continue
            seen = station.watched.setdefault(vid, {})
            for other, ml in known.used.items():
                if ml > seen.get(other, 0):
                    seen[other] = ml
                    self.observations.append((str(vid), other, ml, station.sid, wall, time.time()))

    def report(self) -> dict[str, Any]:
        return {"log": self.log, "observations": self.observations, "events_left": len(self.events),
                "overrun_s": round(max(0.0, time.monotonic() - self.t0_wall - float(self.spec["day_s"])), 1),
                "lateness_s": summary(self.lateness), "inbox_wait_s": summary(self.inbox_wait),
                "timeline": self.timeline, "cpu_s": round(time.process_time(), 1),
                "worst_lateness_by_hour_s": [round(x, 3) for x in self.worst_by_hour],
                "refused_batches": len(self.refusals),
                "stations": {s.sid: {"bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "bytes_ack": s.bytes_ack,
                                     "bytes_tick": s.bytes_tick,
                                     "msgs_in": s.msgs_in,
                                     "entries_in": s.entries_in, "outbox_left": s.journal.outbox_depth(),
                                     "refused": s.link.national.refused}
                             for s in self.stations.values()}}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        for station in self.stations.values():
            station.journal.close()


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": round(ordered[len(ordered) // 2], 4),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4),
            "max": round(ordered[-1], 4), "mean": round(statistics.fmean(ordered), 4)}


def main(argv: list[str]) -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    fleet = Fleet(spec, Path(spec["workdir"]))
    try:
        fleet.run()
        # The day is over: let the last acknowledgements arrive.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(s.journal.outbox_depth() for s in fleet.stations.values()):
            fleet._tick()
            fleet._drain(0.2)
        out.write_text(json.dumps(fleet.report()))
    finally:
        fleet.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
