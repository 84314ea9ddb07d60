"""Content-addressed chunk transport over MQTT, shared by what headquarters sends in pieces.

Headquarters keeps each chunk retained on `<prefix><sha256>`; fetching one is subscribing
to its topic and taking the retained message. `ChunkStore` keeps verified chunks on disk
(a restart fetches only what is missing or rotted); `ChunkFetcher` is the bookkeeping of
one fetch: at most `window` chunks in flight (bounded memory), a chunk that does not come
or comes wrong asked again with exponential backoff. The fetcher does no I/O of its own:
`subscribe`/`unsubscribe` are handed in, so it runs in whatever thread owns the MQTT session.

The same wire format as the allow-list's chunks (agent/allowlist/sync.py): software
releases (agent/updates/updater.py) use it under their own topic prefix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent.allowlist.manifest import Blob
from agent.durable import atomic_write
from agent.trust.root import TrustError

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 300.0


class ChunkStore:
    """`durable=False`: no fsync per chunk. Safe where a chunk is re-hashed before use (a
    lost or torn one is fetched again) and consumed within seconds (the allow-list's
    chunks: fewer SD-card writes)."""

    def __init__(self, directory: Path, durable: bool = True) -> None:
        self.dir = directory
        self.durable = durable
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / digest

    def have(self, digest: str, length: int) -> bool:
        """A kept chunk counts only if it still hashes right (SD cards do rot)."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except OSError:
            return False
        if len(data) == length and hashlib.sha256(data).hexdigest() == digest:
            return True
        path.unlink(missing_ok=True)
        return False

    def put(self, digest: str, length: int, data: bytes) -> None:
        """Keep a chunk that is exactly what the manifest declares, or raise naming why not."""
        if len(data) > length:
            raise TrustError("endless data", f"chunk {digest[:12]} is {len(data)} bytes, declared {length}")
        if len(data) < length:
            raise TrustError("truncated", f"chunk {digest[:12]} is {len(data)} bytes, declared {length}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise TrustError("chunk digest mismatch", f"chunk {digest[:12]} does not match its digest")
        if self.durable:
            atomic_write(self.path(digest), data)
            return
        tmp = self.path(digest + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path(digest))

    def missing(self, blobs: list[Blob]) -> dict[str, int]:
        out: dict[str, int] = {}
        for blob in blobs:
            for i, digest in enumerate(blob.chunks):
                if digest not in out and not self.have(digest, blob.chunk_length(i)):
                    out[digest] = blob.chunk_length(i)
        return out

    def assemble(self, blob: Blob) -> bytes:
        data = b"".join(self.path(d).read_bytes() for d in blob.chunks)
        if len(data) != blob.length:
            raise TrustError("truncated" if len(data) < blob.length else "endless data",
                             f"assembled {len(data)} bytes, declared {blob.length}")
        if hashlib.sha256(data).hexdigest() != blob.sha256:
            raise TrustError("mix-and-match", "chunks do not make up the declared content")
        return data

    def clear(self) -> None:
        for chunk in self.dir.iterdir():
            chunk.unlink(missing_ok=True)


class ChunkSink(Protocol):
    def missing(self, blobs: list[Blob]) -> dict[str, int]: ...
    def put(self, digest: str, length: int, data: bytes) -> None: ...


class ChunkFetcher:
    """Which chunks to ask for next; what arrived goes through `store.put` (verified)."""

    def __init__(self, store: ChunkSink, topic: Callable[[str], str], subscribe: Callable[[str], object],
                 unsubscribe: Callable[[str], object], window: int = 4, timeout_s: float = 10.0) -> None:
        self.store = store
        self.topic = topic
        self._subscribe, self._unsubscribe = subscribe, unsubscribe
        self.window = window
        self.timeout_s = timeout_s
        self.missing: dict[str, int] = {}  # digest -> declared length, in fetch order
        self.total = 0
        self._inflight: dict[str, float] = {}  # digest -> monotonic deadline
        self._not_before: dict[str, float] = {}
        self._attempts: dict[str, int] = {}

    def want(self, blobs: list[Blob]) -> None:
        """Start a new fetch (forgetting the previous one): what is not on disk yet."""
        self.cancel()
        self.missing = self.store.missing(blobs)
        self.total = sum(len(b.chunks) for b in blobs)

    def cancel(self) -> None:
        for digest in self._inflight:
            self._unsubscribe(self.topic(digest))
        self._inflight.clear()
        self._not_before.clear()
        self._attempts.clear()
        self.missing = {}

    @property
    def have(self) -> int:
        return self.total - len(self.missing)

    def arrived(self, digest: str, payload: bytes) -> TrustError | None:
        """Take a chunk message; a wrong one is dropped, asked again later, and returned."""
        if digest not in self._inflight:
            return None  # a retained copy we no longer want
        del self._inflight[digest]
        self._unsubscribe(self.topic(digest))
        if not payload:
            self._retry(digest, "gone from the broker")
            return None
        try:
            self.store.put(digest, self.missing[digest], payload)
        except TrustError as exc:
            self._retry(digest, exc.check)
            return exc
        del self.missing[digest]
        self._attempts.pop(digest, None)
        return None

    def resubscribe(self) -> None:
        """A new MQTT session has no subscriptions: ask for what is in flight again."""
        for digest in self._inflight:
            self._subscribe(self.topic(digest))

    def request(self) -> None:
        now = time.monotonic()
        for digest, deadline in list(self._inflight.items()):
            if now >= deadline:
                del self._inflight[digest]
                self._unsubscribe(self.topic(digest))
                self._retry(digest, "timed out")
        for digest in self.missing:
            if len(self._inflight) >= self.window:
                break
            if digest in self._inflight or self._not_before.get(digest, 0.0) > now:
                continue
            self._inflight[digest] = now + self.timeout_s
            self._subscribe(self.topic(digest))

    def _retry(self, digest: str, why: str) -> None:
        attempts = self._attempts.get(digest, 0) + 1
        self._attempts[digest] = attempts
        delay = min(MAX_BACKOFF_S, self.timeout_s * 2 ** (attempts - 1))
        self._not_before[digest] = time.monotonic() + delay
        log.info("chunk %s %s; again in %.0f s", digest[:12], why, delay)
