"""Fleet updates on the station: fetch a signed release, stage it, switch at a quiet moment,
hold a health window, commit or roll back, and say what happened.

`ReleaseFetch` runs its own MQTT session and worker thread (like the allow-list sync): the
retained manifest on hq/v1/software/manifest is verified (signature of the `software`
role, sequence above the floor, not expired, this station in the rollout cohort, version
not parked, agent new enough), its files fetched as content-addressed chunks
(agent/allowlist/chunks.py) or read from a USB stick (`usb_dir` holding manifest.json and files/,
checked the same way), then staged side by side with a venv built offline
(agent/updates/store.py). `UpdateAgent` is what the station's loop calls: it switches only when
no session is open and no payment is in flight (agent/updates/switch.py does the swap,
at the next start), and on a trial start runs the health window: the loop stays healthy
(so systemd's watchdog is fed), the broker link comes up, the relay board says hello with
the release's firmware version. Pass: commit. Fail: request a rollback and exit; the
next start is the previous release, which reports why.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import __version__, topics
from agent.allowlist.chunks import ChunkFetcher, ChunkStore
from agent.config import StationConfig
from agent.docstore import DocumentStore
from agent.islands import IslandPayments
from agent.mqtt_link import MAX_MESSAGE_BYTES, MqttLink
from agent.pump_states import PumpRuntime
from agent.trust.root import TrustError, TrustStore
from agent.update_config import UpdateConfig
from agent.updates import manifest as rm
from agent.updates.firmware import FirmwareOutcome, converge
from agent.updates.store import ReleaseError, ReleaseStore
from agent.updates.switch import Switch


class UpdatedStation(Protocol):
    """What the update agent needs of the station (agent/station.py's public API)."""

    config: StationConfig
    pumps: dict[int, PumpRuntime]
    payments: IslandPayments
    docs: DocumentStore
    events: queue.Queue[object]
    link: MqttLink

    def health(self, max_task_age_s: float = 3.0) -> tuple[bool, str]: ...

log = logging.getLogger(__name__)
EXIT_SWITCH = 75  # the agent exits to be started again on the new release (EX_TEMPFAIL)
EXIT_ROLLBACK = 76


@dataclass(frozen=True)
class UpdateEvent:
    kind: str  # "progress" | "staged" | "rejected" | "waiting"
    version: str = ""
    check: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ReleaseFetch:
    def __init__(self, cfg: UpdateConfig, station_id: str, host: str, port: int, trust: TrustStore,
                 on_event: Callable[[UpdateEvent], None], switch: Switch,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.cfg, self.station_id, self.trust, self.on_event, self.switch, self.now = (
            cfg, station_id, trust, on_event, switch, now)
        self.chunk_store = ChunkStore(cfg.state / "chunks")
        self.store = ReleaseStore(cfg.releases, self.chunk_store, cfg.base_site)
        self.pending: rm.ReleaseManifest | None = None
        self.staged: rm.ReleaseManifest | None = None
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._stop = threading.Event()
        self._usb_seen = b""
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spbu-{station_id}-update-"
                                  f"{uuid.uuid4().hex[:6]}", clean_session=True, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=1, max_delay=60)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: (self._inbox.put((m.topic, bytes(m.payload)))
                                                  if len(m.payload) <= MAX_MESSAGE_BYTES else None)
        self.fetcher = ChunkFetcher(self.chunk_store, topics.software_chunk,
                                    lambda t: self.client.subscribe(t, qos=1), self.client.unsubscribe)
        self.host, self.port = host, port
        self._worker = threading.Thread(target=self._run, name="release-fetch", daemon=True)

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._worker.start()

    def close(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        self.client.disconnect()
        self.client.loop_stop()
        if self._worker.is_alive():
            self._worker.join(timeout=30)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(topics.SOFTWARE_MANIFEST, qos=1)
            self._inbox.put(("$reconnected", b""))

    def _run(self) -> None:
        next_usb = 0.0
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=0.5)
            except queue.Empty:
                item = ("$tick", b"")
            if item is None:
                return
            try:
                self._handle(*item)
                if self.cfg.usb_dir is not None and time.monotonic() >= next_usb:
                    next_usb = time.monotonic() + 2.0
                    self._look_at_usb(self.cfg.usb_dir)
            except Exception:  # the updater must outlive any one bad message
                log.exception("release fetch: unexpected error on %s", item[0])

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == topics.SOFTWARE_MANIFEST and payload:
            self.offer(payload)
        elif topic.startswith(topics.SOFTWARE_CHUNK_PREFIX):
            bad = self.fetcher.arrived(topic[len(topics.SOFTWARE_CHUNK_PREFIX):], payload)
            if bad is not None:
                self._reject("release chunk", bad, self.pending.version if self.pending else "")
            self._maybe_stage()
        elif topic == "$reconnected":
            self.fetcher.resubscribe()
        self.fetcher.request()

    def _reject(self, what: str, exc: TrustError, version: str = "") -> None:
        log.warning("%s rejected: %s", what, exc)
        self.on_event(UpdateEvent("rejected", version, exc.check, f"{what}: {exc}"))

    def judge(self, payload: bytes) -> rm.ReleaseManifest | None:
        """The manifest, if this station should take it now; otherwise why not, reported."""
        try:
            self.trust.check_fresh(rm.ROLE)  # an expired root vouches for no new release
            manifest = rm.verify(self.trust, payload, self.now())
        except TrustError as exc:
            if exc.check != "already current":
                self._reject("release manifest", exc)
            return None
        if manifest.version == __version__:
            return None  # the release we run (on trial until its health window closes)
        if self.switch.parked(manifest.version):
            self.on_event(UpdateEvent("waiting", manifest.version, "parked",
                                      "parked after two failed attempts: waiting for a newer release"))
            return None
        if rm.parse_version(manifest.min_agent_version) > rm.parse_version(__version__):
            self._reject("release manifest", TrustError("agent too old", f"needs {manifest.min_agent_version}"),
                         manifest.version)
            return None
        if not manifest.rollout.includes(self.station_id):
            self.on_event(UpdateEvent("waiting", manifest.version, "cohort",
                                      "halted" if manifest.rollout.halted else
                                      f"not in the {manifest.rollout.percent} % cohort yet"))
            return None
        return manifest

    def offer(self, payload: bytes) -> None:
        manifest = self.judge(payload)
        if manifest is None:
            if self.pending is not None:
                self.fetcher.cancel()
                self.pending = None
            return
        if self.staged is not None and self.staged.sequence == manifest.sequence:
            return
        if self.pending is not None and self.pending.sequence == manifest.sequence:
            return
        self.pending = manifest
        self.fetcher.want(manifest.blobs())
        log.info("release %s announced: %d of %d chunks to fetch", manifest.version,
                 len(self.fetcher.missing), self.fetcher.total)
        self._maybe_stage()

    def _maybe_stage(self) -> None:
        manifest = self.pending
        if manifest is None or self.fetcher.missing:
            if manifest is not None:
                self.on_event(UpdateEvent("progress", manifest.version,
                                          extra={"chunks_have": self.fetcher.have, "chunks_total": self.fetcher.total}))
            return
        self.pending = None
        try:
            self.store.stage(manifest)
        except ReleaseError as exc:
            self._reject("release", TrustError("staging failed", str(exc)), manifest.version)
            return
        self.chunk_store.clear()
        self.staged = manifest
        self.on_event(UpdateEvent("staged", manifest.version))

    def _look_at_usb(self, stick: Path) -> None:
        """A stick with manifest.json and files/: chunks cut from its files, checked one by one."""
        try:
            raw = (stick / "manifest.json").read_bytes()
        except OSError:
            return
        if raw == self._usb_seen:
            return
        self._usb_seen = raw
        manifest = self.judge(raw)
        if manifest is None:
            return
        for item in manifest.files:
            try:
                data = (stick / "files" / item.path).read_bytes()
            except OSError:
                continue  # a missing file stays missing: the broker may still bring it
            for i, digest in enumerate(item.blob.chunks):
                size = item.blob.chunk_size
                try:
                    self.chunk_store.put(digest, item.blob.chunk_length(i), data[i * size:(i + 1) * size])
                except TrustError as exc:
                    self._reject("release file on USB", exc, manifest.version)
                    break
        self.pending = None
        self.offer(raw)


def quiet(station: UpdatedStation) -> bool:
    """No open session and no payment at the terminal: a restart costs nobody anything."""
    desk = station.payments
    return (all(p.session is None for p in station.pumps.values())
            and getattr(desk, "_in_flight", None) is None
            and not any(desk.busy(n) for n in station.pumps))


class UpdateAgent:
    """The station's side: quiet-moment switch, health window, reports."""

    def __init__(self, cfg: UpdateConfig, station: UpdatedStation) -> None:
        self.cfg = cfg
        self.station = station
        c = station.config
        self.switch = Switch(cfg.releases, cfg.state, cfg.config_path, cfg.journal_path)
        self.fetch = ReleaseFetch(cfg, c.station_id, c.broker_host, c.broker_port, station.docs.trust,
                                  station.events.put, self.switch)
        state = self.switch.load()
        trial = state.get("trial") or {}
        running = self.switch.current()
        self.trial = trial.get("version") if trial and trial.get("version") == running else None
        self.trial_deadline = time.monotonic() + cfg.health_window_s
        self.firmware_expected = self._firmware_version(running)
        self.seen_link = False
        self.needs_hello = c.relay_board_kind == "uart"  # DART pumps and a GPIO relay have no hello
        self.seen_hello: int | None = None
        self.unhealthy = ""
        self.state: dict[str, Any] = {"state": "trial" if self.trial else "idle", "running": __version__}
        self.exit_code: int | None = None
        self.firmware: FirmwareOutcome | None = None

    def before_devices(self) -> None:
        """The relay board on this release's firmware (agent/updates/firmware.py), pumps closed."""
        c = self.station.config
        if c.relay_board_kind != "uart":
            return
        self.firmware = converge(c.relay_board_port, c.relay_board_baud, self.cfg.releases / "current",
                                 trial_ms=self.cfg.board_trial_ms)
        if not self.firmware.ok:
            log.error("relay board firmware: %s", self.firmware.detail)
        # The health window is the running station's: it starts once the pumps can open.
        self.trial_deadline = time.monotonic() + self.cfg.health_window_s

    def _firmware_version(self, version: str | None) -> int:
        try:
            return rm.parse(json.loads((self.cfg.releases / str(version) / "manifest.json").read_bytes())["signed"],
                            b"").firmware_version
        except (OSError, ValueError, KeyError, TrustError):
            return 0

    def start(self) -> None:
        self.fetch.start()

    def close(self) -> None:
        self.fetch.close()

    def on_event(self, event: UpdateEvent) -> None:
        if event.kind == "staged":
            self.state = {"state": "staged", "running": __version__, "candidate": event.version}
        elif event.kind == "rejected":
            self.state = {"state": "rejected", "running": __version__, "version": event.version,
                          "check": event.check, "detail": event.detail}
        elif event.kind == "waiting":
            self.state = {"state": "waiting", "running": __version__, "version": event.version,
                          "why": event.check, "detail": event.detail}
        elif event.kind == "progress":
            self.state = {"state": "fetching", "running": __version__, "version": event.version, **event.extra}
        if event.kind != "progress" or event.extra.get("chunks_have") == event.extra.get("chunks_total"):
            self.report()

    def summary(self) -> dict[str, Any]:
        """For the heartbeat and the dashboard: what runs and what the update is doing."""
        out = {"state": str(self.state.get("state", "idle")), "running": __version__}
        for key in ("candidate", "version", "check", "why", "reason"):
            if key in self.state:
                out[key] = str(self.state[key])
        return out

    def on_board_hello(self, firmware: int) -> None:
        self.seen_hello = firmware

    def report(self) -> None:
        last = self.switch.load().get("last")
        payload = {"station": self.station.config.station_id, "at": dt.datetime.now(dt.UTC).isoformat(),
                   "running": __version__, **self.state, "last": last}
        self.station.link.publish(topics.update(self.station.config.station_id), json.dumps(payload).encode(),
                                  qos=1, retain=True)
        if last and not last.get("reported") and self.station.link.connected:
            self.switch.mark_reported()

    def tick(self, now: float) -> None:
        """From the station's loop: the health window, then a quiet-moment switch."""
        if self.station.link.connected and not self.seen_link:
            self.seen_link = True
            self.report()
        if self.trial is not None:
            self._judge_trial(now)
            return
        staged = self.fetch.staged
        if staged is not None and self.exit_code is None and quiet(self.station):
            try:
                self.switch.request_switch(staged.version, list(staged.config_migration), list(staged.journal_up),
                                           None if staged.journal_down is None else list(staged.journal_down))
            except ValueError as exc:
                log.warning("switch to %s refused: %s", staged.version, exc)
                self.fetch.staged = None
                return
            log.info("quiet moment: switching to release %s", staged.version)
            self.state = {"state": "switching", "running": __version__, "candidate": staged.version}
            self.report()
            self.exit_code = EXIT_SWITCH

    def _judge_trial(self, now: float) -> None:
        healthy, why = self.station.health()
        if not healthy:
            self.unhealthy = why
        hello_ok = not self.needs_hello or (self.seen_hello is not None and (
            not self.firmware_expected or self.seen_hello == self.firmware_expected))
        if now < self.trial_deadline:
            return
        firmware_ok = self.firmware is None or self.firmware.ok
        failures = [w for ok, w in ((firmware_ok, self.firmware.detail if self.firmware else ""),
                                    (not self.unhealthy, f"unhealthy: {self.unhealthy}"),
                                    (self.seen_link, "the broker link never came up"),
                                    (hello_ok, self._hello_failure())) if not ok]
        version, self.trial = self.trial, None
        if not failures:
            try:
                self.switch.commit(str(version))
            except ValueError as exc:  # the state changed under us: leave it to the next boot
                log.error("release %s passed its health window but cannot be committed: %s", version, exc)
                return
            self.station.docs.trust.raise_floor(rm.ROLE, self._sequence(str(version)))
            self.state = {"state": "installed", "running": __version__}
            log.info("release %s passed its health window: committed", version)
            self.report()
            return
        reason = "; ".join(failures)
        log.error("release %s failed its health window: %s", version, reason)
        self.switch.request_rollback(reason)
        self.state = {"state": "rolling_back", "running": __version__, "reason": reason}
        self.report()
        self.exit_code = EXIT_ROLLBACK

    def _hello_failure(self) -> str:
        if self.seen_hello is None:
            return "the relay board never said hello"
        return f"the relay board runs firmware {self.seen_hello}, the release carries {self.firmware_expected}"

    def _sequence(self, version: str) -> int:
        try:
            return rm.parse(json.loads((self.cfg.releases / version / "manifest.json").read_bytes())["signed"],
                            b"").sequence
        except (OSError, ValueError, KeyError, TrustError):
            return 0
