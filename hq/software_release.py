"""Headquarters' side of software releases: build, sign, publish, carry on a USB stick.

A release directory:

    <dir>/files/wheels/*.whl          the agent and (for the field) every dependency
    <dir>/files/deploy/...            deploy files (systemd units, broker config)
    <dir>/files/firmware/<flash path> relay-board firmware, as laid out on the board
    <dir>/body.json                   the unsigned manifest body (`spbu release build`)
    <dir>/manifest.json               the signed manifest (`spbu release sign`)

The same directory is what goes on a USB stick: a station reads manifest.json and files/
from it (agent/updates/updater.py) exactly as it would from the broker, with the same checks.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from agent import topics
from agent.allowlist.manifest import chunk_digests
from agent.trust import root as trust
from agent.trust.root import TrustError
from agent.updates import manifest as rm


class ReleaseBuildError(ValueError):
    pass


def _copy_into(files: Path, rel: str, data: bytes) -> None:
    target = files / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def build(out: Path, version: str, sequence: int, wheels: list[Path], deploy: Path | None = None,
          firmware: dict[str, Path] | None = None, firmware_version: int = 0, min_agent_version: str = "0.1.0",
          migrations: dict[str, Any] | None = None, validity: dt.timedelta = dt.timedelta(days=90),
          percent: int = 1, chunk_size: int = rm.DEFAULT_CHUNK, now: dt.datetime | None = None) -> dict[str, Any]:
    """Lay out the files and write body.json; `firmware` maps flash paths to sources."""
    try:
        rm.parse_version(version)
        rm.parse_version(min_agent_version)
    except TrustError as exc:
        raise ReleaseBuildError(str(exc)) from exc
    if not any(w.name.startswith("spbu_edge-" + version + "-") for w in wheels):
        raise ReleaseBuildError(f"no spbu_edge-{version}-*.whl among the wheels")
    shutil.rmtree(out / "files", ignore_errors=True)
    files = out / "files"
    entries: list[dict[str, Any]] = []
    sources: list[tuple[str, str, Path]] = [(f"wheels/{w.name}", "wheel", w) for w in wheels]
    if deploy is not None:
        sources += [(f"deploy/{p.relative_to(deploy)}", "deploy", p) for p in sorted(deploy.rglob("*")) if p.is_file()]
    for flash_path, source in sorted((firmware or {}).items()):
        sources.append((f"firmware/{flash_path}", "firmware", source))
    for rel, kind, source in sources:
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ReleaseBuildError(f"cannot read {source}: {exc.strerror}") from exc
        _copy_into(files, rel, data)
        entries.append(rm.file_body(rel, kind, data, chunk_size))
    created = now or dt.datetime.now(dt.UTC)
    body = rm.manifest_body(version, sequence, created, created + validity, entries, min_agent_version,
                            firmware_version, chunk_size, migrations,
                            {"percent": percent, "step": 1, "halted": False})
    rm.parse(body, b"")  # what we would refuse to sign, we refuse to build
    out.mkdir(parents=True, exist_ok=True)
    (out / "body.json").write_text(json.dumps(body, indent=1, sort_keys=True))
    return body


def sign(out: Path, keys: list[Ed25519PrivateKey]) -> bytes:
    body = json.loads((out / "body.json").read_text())
    raw = trust.sign(body, keys)
    (out / "manifest.json").write_bytes(raw)
    return raw


def reroll(out: Path, keys: list[Ed25519PrivateKey], percent: int | None = None, halted: bool = False) -> bytes:
    """The next rollout step (a wider cohort, or a halt), signed: the same files, new `step`."""
    body = json.loads((out / "body.json").read_text())
    rollout = body["rollout"]
    rollout["step"] = int(rollout.get("step", 0)) + 1
    rollout["halted"] = halted
    if percent is not None:
        rollout["percent"] = percent
    (out / "body.json").write_text(json.dumps(body, indent=1, sort_keys=True))
    return sign(out, keys)


def chunks(out: Path) -> dict[str, bytes]:
    """Every chunk of every file, by digest (the manifest's chunk size)."""
    body = json.loads((out / "body.json").read_text())
    size = int(body["chunk_size"])
    found: dict[str, bytes] = {}
    for entry in body["files"]:
        data = (out / "files" / entry["path"]).read_bytes()
        for i, digest in enumerate(chunk_digests(data, size)):
            found[digest] = data[i * size:(i + 1) * size]
    return found


def export_usb(out: Path, stick: Path) -> None:
    """What a technician carries: the signed manifest and the files, nothing else."""
    if not (out / "manifest.json").exists():
        raise ReleaseBuildError(f"{out} is not signed yet (spbu release sign)")
    stick.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out / "manifest.json", stick / "manifest.json")
    shutil.copytree(out / "files", stick / "files", dirs_exist_ok=True)


class ReleasePublisher:
    """Chunks first, then the manifest that names them (retained): a station that sees the
    manifest can always find its chunks."""

    def __init__(self, host: str, port: int, client_id: str = "spbu-hq-software") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self._up = threading.Event()
        self.client.on_connect = lambda *a: self._up.set()
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ReleaseBuildError(f"cannot reach the broker at {host}:{port}: {exc.strerror or exc}") from exc
        self.client.loop_start()
        if not self._up.wait(10):
            raise ReleaseBuildError(f"cannot reach the broker at {host}:{port}")

    def put(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout=60)
        if not info.is_published():
            raise ReleaseBuildError(f"broker did not take {topic}")

    def publish(self, manifest: bytes, pieces: dict[str, bytes]) -> int:
        for digest, data in pieces.items():
            self.put(topics.software_chunk(digest), data)
        self.put(topics.SOFTWARE_MANIFEST, manifest)
        return len(pieces)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
