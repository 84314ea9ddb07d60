"""Bring the relay board to the firmware of the release that runs, before the pumps open.

At start (agent/updates/updater.py calls this before the station opens its devices), the agent
says hello to the board on its own short-lived driver; the board answers with its
firmware version. If the running release carries firmware of another version, its files
are written over the UART (hal/fw_update.py), the board restarts, and the new firmware
must say hello with the new version; otherwise the board's boot guard restores the old
files. No heartbeat is sent meanwhile, and the board refuses AUTHORIZE while updating:
the relays stay open throughout. The same step brings a board back to the old firmware
after a rollback (the previous release carries its own firmware files).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path

from agent.trust.root import TrustError
from agent.updates import manifest as rm
from hal.fw_update import DONE, FirmwareSender
from hal.relay_board import BoardEvent, BoardHello, FirmwareResult, RelayBoard

log = logging.getLogger(__name__)
HELLO_WAIT_S = 5.0
MAX_UPDATE_S = 150.0


@dataclass(frozen=True)
class FirmwareOutcome:
    ok: bool
    detail: str
    board_version: int | None  # what the board said last


def release_firmware(release: Path) -> tuple[int, list[tuple[str, bytes]]]:
    """The firmware version a release expects and its files as (flash path, bytes)."""
    try:
        raw = (release / "manifest.json").read_bytes()
        manifest = rm.parse(json.loads(raw)["signed"], raw)
    except (OSError, ValueError, KeyError, TrustError):
        return 0, []
    files = [(f.path[len("firmware/"):], (release / "files" / f.path).read_bytes())
             for f in manifest.of_kind("firmware")]
    return manifest.firmware_version, files


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def converge(port: str, baud: int, release: Path, hello_wait_s: float = HELLO_WAIT_S,
             trial_ms: int = 20000) -> FirmwareOutcome:
    version, files = release_firmware(release)
    if not version or not files:
        return FirmwareOutcome(True, "the release carries no firmware", None)
    events: queue.Queue[BoardEvent] = queue.Queue()
    board = RelayBoard(port, events.put, baud)
    board.start()
    try:
        hello = _wait_hello(events, hello_wait_s)
        if hello is None:
            return FirmwareOutcome(False, "the relay board did not say hello", None)
        if hello.firmware == version:
            return FirmwareOutcome(True, f"firmware {version} already on the board", version)
        log.warning("relay board runs firmware %d, this release carries %d: updating it over the UART",
                    hello.firmware, version)
        return _update(board, events, files, version, trial_ms, hello.firmware)
    finally:
        board.close()


def _wait_hello(events: queue.Queue[BoardEvent], timeout_s: float) -> BoardHello | None:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            break
        if isinstance(event, BoardHello):
            return event
    return None


def _update(board: RelayBoard, events: queue.Queue[BoardEvent], files: list[tuple[str, bytes]], version: int,
            trial_ms: int, old_version: int) -> FirmwareOutcome:
    started = time.monotonic()
    sender = FirmwareSender(files, version, int.from_bytes(os.urandom(4), "big"), _now_ms(),
                            hello_ms=max(2000, trial_ms // 3), restore_ms=trial_ms * 2, old_version=old_version)
    last_hello: int | None = None
    while not sender.finished and time.monotonic() - started < MAX_UPDATE_S:
        out = sender.poll(_now_ms(), board.in_flight)
        try:
            event = events.get(timeout=0.01)
        except queue.Empty:
            event = None
        if isinstance(event, FirmwareResult):
            out += sender.on_result(event.step, event.code, event.detail, _now_ms())
        elif isinstance(event, BoardHello):
            last_hello = event.firmware
            out += sender.on_hello(event.firmware, _now_ms())
        for mtype, values in out:
            board.send_message(mtype, values)
    took = time.monotonic() - started
    if sender.state == DONE:
        log.info("relay board firmware %d installed and confirmed in %.1f s", version, took)
        return FirmwareOutcome(True, f"firmware {version} installed in {took:.1f} s", version)
    why = sender.error or f"the update did not finish within {MAX_UPDATE_S:.0f} s"
    log.error("relay board firmware %d not installed: %s", version, why)
    return FirmwareOutcome(False, f"firmware {version}: {why}", last_hello)
