"""Fetches the signed allow-list over MQTT: manifest, then content chunks, then install.

Headquarters keeps, retained: the manifest on hq/v1/allowlist/manifest, each root version
on hq/v1/root/<n>, and each content chunk on hq/v1/allowlist/chunk/<sha256>. Chunks are
content-addressed, so fetching one is subscribing to its topic and taking the retained
message. At most `window` chunks are in flight (bounded memory); each is verified and
kept on disk at once, so after a restart only missing or damaged chunks are fetched again.
A chunk that does not come, or comes wrong, is asked for again with exponential backoff.

Runs its own MQTT session and worker thread; the station hears of it through `on_event`
(progress, installed, rejected with the failed check named). Heavy work (delta apply at
national scale takes seconds) happens here, never in the station's event loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import disk_guard, topics
from agent.allowlist import manifest as manifests
from agent.allowlist import verify
from agent.allowlist.chunks import ChunkFetcher
from agent.allowlist.manifest import Blob, Manifest
from agent.allowlist.repo import AllowListRepo
from agent.allowlist.store import StoreError
from agent.mqtt_link import MAX_MESSAGE_BYTES
from agent.trust.root import TrustError, TrustStore

log = logging.getLogger(__name__)

# Roots published ahead of the next one are kept until it comes, at most this many versions ahead.
MAX_PENDING_ROOTS = 8


@dataclass(frozen=True)
class SyncEvent:
    kind: str  # "progress" | "installed" | "rejected" | "root" | "verified" | "corrupt"
    version: int = 0
    check: str = ""  # the failed check, for "rejected"
    detail: str = ""
    have: int = 0  # chunks on disk, for "progress"
    need: int = 0

    def progress(self) -> dict[str, Any]:
        return {"version": self.version, "chunks_have": self.have, "chunks_total": self.need}


class _RepoChunks:
    """The repo's chunk directory, as the shared fetcher wants it."""

    def __init__(self, repo: AllowListRepo) -> None:
        self.repo = repo

    def missing(self, blobs: list[Blob]) -> dict[str, int]:
        return dict(self.repo.missing(blobs))

    def put(self, digest: str, length: int, data: bytes) -> None:
        self.repo.put_chunk(digest, length, data)


class AllowListSync:
    def __init__(self, host: str, port: int, station_id: str, repo: AllowListRepo, trust: TrustStore,
                 on_event: Callable[[SyncEvent], None], window: int = 4, chunk_timeout_s: float = 10.0,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.repo = repo
        self.trust = trust
        self.on_event = on_event
        self.window = window
        self.chunk_timeout_s = chunk_timeout_s
        self.now = now
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._stop = threading.Event()
        self.pending: Manifest | None = None
        self._last_manifest: bytes | None = None
        self._roots: dict[int, bytes] = {}
        self._last_progress = 0.0
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"spbu-{station_id}-allowlist-{uuid.uuid4().hex[:6]}",
                                  clean_session=True, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=1, max_delay=60)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: (self._inbox.put((m.topic, bytes(m.payload)))
                                                  if len(m.payload) <= MAX_MESSAGE_BYTES else None)
        # The chunk transport shared with software releases (agent/allowlist/chunks.py).
        self.fetcher = ChunkFetcher(_RepoChunks(repo), topics.allowlist_chunk,
                                    lambda t: self.client.subscribe(t, qos=1), self.client.unsubscribe,
                                    window, chunk_timeout_s)
        self._worker = threading.Thread(target=self._run, name="allowlist-sync", daemon=True)

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

    # --- MQTT thread ------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe([(topics.ALLOWLIST_MANIFEST, 1), (topics.ROOT_ALL, 1)])
        self._inbox.put(("$reconnected", b""))

    # --- worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        self._guarded_boot_check()
        while not self._stop.is_set():
            try:
                # Chunk timers tick only while chunks are awaited; idle, it sleeps.
                item = self._inbox.get(timeout=0.5 if self.fetcher.missing else 5.0)
            except queue.Empty:
                item = ("$tick", b"")
            if item is None:
                return
            topic, payload = item
            try:
                self._handle(topic, payload)
            except Exception:  # the sync must outlive any one bad message
                log.exception("allow-list sync: unexpected error on %s", topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == topics.ALLOWLIST_MANIFEST:
            if payload:
                self._last_manifest = payload
                self._offer_manifest(payload)
        elif topic.startswith(topics.ROOT_PREFIX):
            self._offer_root(topic, payload)
        elif topic.startswith(topics.ALLOWLIST_CHUNK_PREFIX):
            self._chunk(topic[len(topics.ALLOWLIST_CHUNK_PREFIX):], payload)
        elif topic == "$reconnected":
            self.fetcher.resubscribe()  # a new session has no subscriptions: ask again
        self.fetcher.request()

    def _guarded_boot_check(self) -> None:
        try:
            self.boot_check()
        except Exception:  # the sync must start whatever the check met
            log.exception("allow-list boot check failed")

    def boot_check(self) -> None:
        """The installed version re-hashed in full (boot opens it on cheap checks only):
        first thing in this thread, so scans are served meanwhile and messages wait. A
        corrupt version is taken out of service and fetched again (agent/allowlist/verify.py)."""
        verdict = verify.check_current(self.repo.root, self.trust)
        if verdict is None:
            return
        if verdict.ok:
            log.info("allow-list v%d verified in full (%.2f s)", verdict.version, verdict.seconds)
            self.on_event(SyncEvent("verified", verdict.version, detail=f"{verdict.seconds:.2f} s"))
            return
        log.error("allow-list v%d is corrupt on disk: %s", verdict.version, verdict.detail)
        verify.quarantine(self.repo.root, verdict.version, verdict.sha256)
        self.on_event(SyncEvent("corrupt", verdict.version, verdict.check, verdict.detail))
        # Fetched again, in full, when headquarters' retained manifest comes: this check runs
        # first in the worker, so that manifest waits in the inbox and finds nothing installed.

    def _reject(self, kind: str, exc: TrustError, version: int = 0) -> None:
        log.warning("%s rejected: %s", kind, exc)
        self.on_event(SyncEvent("rejected", version, exc.check, f"{kind}: {exc}"))

    def _offer_root(self, topic: str, payload: bytes) -> None:
        try:
            version = int(topic.rsplit("/", 1)[1])
        except ValueError:
            return
        if not payload or not self.trust.root.version < version <= self.trust.root.version + MAX_PENDING_ROOTS:
            return  # old, or too far ahead to be the next few: never an unbounded buffer
        self._roots[version] = payload
        while (nxt := self.trust.root.version + 1) in self._roots:
            try:
                changed = self.trust.update_root(self._roots.pop(nxt), self.now())
            except TrustError as exc:
                self._reject("root", exc, nxt)
                return
            log.info("root version %d installed; roles rotated: %s", nxt, ", ".join(changed) or "none")
            self.on_event(SyncEvent("root", nxt, detail=",".join(changed)))
            if manifests.ROLE in changed and self._last_manifest:
                self._offer_manifest(self._last_manifest)  # fast-forward recovery: re-judge it

    def _offer_manifest(self, payload: bytes) -> None:
        try:
            # The version at the floor is wanted again when nothing is installed (quarantined)
            # or what is installed cannot be opened (a manifest that does not verify).
            reinstall = (self.repo.current_version() is None
                         or not verify.manifest_verifies(self.repo.root, self.trust))
            manifest = manifests.verify(self.trust, payload, self.now(), reinstall=reinstall,
                                        same_as=verify.quarantined(self.repo.root) if reinstall else None)
        except TrustError as exc:
            if exc.check != "already current":
                self._reject("allowlist manifest", exc)
            return
        if self.pending is not None and self.pending.raw == manifest.raw:
            return
        self.fetcher.cancel()
        self.pending = manifest
        chain = manifest.plan(self.repo.current_version())
        blobs = [manifest.snapshot] if chain is None else [d.blob for d in chain]
        need = disk_guard.LIST_INSTALL_FACTOR * sum(b.length for b in blobs)
        enough, free = disk_guard.room_for(self.repo.root, need)
        if not enough:  # refused before a byte is fetched, with an alarm, not half-way with a full disk
            self.pending = None
            self.on_event(SyncEvent("rejected", manifest.version, "disk_space",
                                    f"allow-list v{manifest.version} needs {need >> 20} MB free, "
                                    f"{free >> 20} MB left"))
            return
        self.fetcher.want(blobs)
        log.info("allow-list v%d announced: %s, %d of %d chunks to fetch", manifest.version,
                 "snapshot" if chain is None else f"{len(chain)} delta(s)", len(self.fetcher.missing),
                 self.fetcher.total)
        self._progress(force=True)
        if not self.fetcher.missing:
            self._finish()

    def _chunk(self, digest: str, payload: bytes) -> None:
        wanted = digest in self.fetcher.missing
        bad = self.fetcher.arrived(digest, payload)
        if bad is not None:
            self._reject("allowlist chunk", bad, self.pending.version if self.pending else 0)
            return
        if not wanted or digest in self.fetcher.missing:
            return  # not ours, or asked again later (gone from the broker)
        self._progress()
        if not self.fetcher.missing:
            self._finish()

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self.fetcher.missing and now - self._last_progress < 2.0:
            return
        self._last_progress = now
        version = self.pending.version if self.pending else 0
        have, total = self.fetcher.have, self.fetcher.total
        log.info("allow-list v%d: %d of %d chunks", version, have, total)
        self.on_event(SyncEvent("progress", version, have=have, need=total))

    def _finish(self) -> None:
        manifest = self.pending
        if manifest is None:
            return
        self.pending = None
        try:
            self.repo.install_fetched(manifest)
        except TrustError as exc:
            self._reject("allowlist", exc, manifest.version)
            for chunk in list(self.repo.chunks.iterdir()):  # a bad combination: fetch afresh next time
                chunk.unlink(missing_ok=True)
            return
        except (StoreError, OSError) as exc:
            self._reject("allowlist", TrustError("malformed", str(exc)), manifest.version)
            return
        verify.forget_quarantined(self.repo.root)
        log.info("allow-list v%d installed (%d entries)", manifest.version, manifest.count)
        self.on_event(SyncEvent("installed", manifest.version))
