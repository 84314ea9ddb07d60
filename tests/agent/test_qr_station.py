"""QR input through to the agent's decision, on real parts (broker, pseudo-terminals,
journal): signed tokens over a serial scanner, each kind of bad token refused with its own
attendant line, duplicate reads, and camera frames from the simulator."""

from __future__ import annotations

import datetime as dt
import queue
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli.demo import DemoStation
from agent.domain import mask_plate
from agent.messages import attendant_line
from agent.qr.base45 import b45decode, b45encode
from agent.qr.tokens import PREFIX, issue_token
from hal.camera import CameraScanner
from hal.scanner import ScannerEvent, ScannerNotice, ScannerState, ScanRead
from simulators.broker import MosquittoBroker
from simulators.camera import SimulatedCamera
from tests.conftest import validate
from tests.helpers import wait_for, wait_until

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).date()


def _alter_plate(token: str, plate: str) -> str:
    raw = bytearray(b45decode(token[len(PREFIX):]))
    assert raw[21] == len(plate)
    raw[22:22 + len(plate)] = plate.encode()
    return PREFIX + b45encode(bytes(raw))


def _forge(token: str) -> str:
    raw = bytearray(b45decode(token[len(PREFIX):]))
    raw[-1] ^= 0x55  # the signature's last byte
    return PREFIX + b45encode(bytes(raw))


@pytest.fixture
def demo(mosquitto: MosquittoBroker, tmp_path: Path) -> Any:
    station = DemoStation(pumps=2, broker=mosquitto, workdir=tmp_path / "demo", quiet=True)
    station.start()
    yield station
    station.close()


def test_bad_tokens_each_get_their_own_refusal(demo: DemoStation) -> None:
    car = next(e for e in demo.registry if e.category == "private_car" and e.products & 1 and e.status == "active")
    good = demo.token(car.vehicle_id)
    altered_plate = car.plate[:-1] + ("A" if car.plate[-1] != "A" else "B")
    cases = {
        "token_forged": _forge(good),
        "token_unknown_key": issue_token(car.vehicle_id, car.plate, TODAY, Ed25519PrivateKey.generate()),
        "token_plate_altered": _alter_plate(good, altered_plate),
        "unknown_qr": "SPBU2:" + "NOT-A-TOKEN",
        # The old unsigned form, which anyone could type: with the signed list's salt it is a
        # legacy opaque text, mapped through the keyed hash to an id that is not on the list.
        "not_registered": "SPBU1:" + str(car.vehicle_id),
    }
    for reason, text in cases.items():
        before = len(demo.lines)
        demo.scanners[1].scan(text)
        decision = demo.tracker.next(1, "decision", 5)
        assert decision is not None and decision["ok"] is False and decision["reason"] == reason, decision
        said = demo.lines[before:]
        plate = mask_plate(altered_plate) if reason == "token_plate_altered" else ""  # the page shows it in full
        assert attendant_line("id", reason, pump=1, plate=plate) in said, said
        assert not demo.board.relay_closed(0)
    assert demo.station is not None
    assert demo.station.journal.quota_used(car.vehicle_id, "pertalite", demo.station._read_clock().quota_day) == (0, 0)


def test_plate_comes_from_the_token_and_a_repeat_read_is_one_scan(demo: DemoStation) -> None:
    car = next(e for e in demo.registry if e.category == "private_car" and e.products & 1 and e.status == "active")
    assert demo.hq is not None
    token = issue_token(car.vehicle_id, "B 9876 QR", TODAY, demo.hq_key)  # re-plated since the list was made
    demo.scanners[1].scan(token)
    demo.scanners[1].scan(token)  # the scanner beeps twice at the same phone
    decision = demo.tracker.next(1, "decision", 5)
    assert decision is not None and decision["ok"] is True and decision["plate"] == "B ***6 QR"
    # Masked on stdout (it ends in journald); in full only on the attendant's page.
    assert any("B ***6 QR" in line for line in demo.lines) and not any("B 9876 QR" in line for line in demo.lines)
    assert demo.tracker.next(1, "decision", 1.0) is None  # no second decision
    demo.board.hang_nozzle(0)


def test_camera_frames_through_to_a_decision(demo: DemoStation) -> None:
    assert demo.station is not None
    bike = next(e for e in demo.registry if e.category == "motorcycle" and e.status == "active")
    sink = demo.station._scanner_sink(1)
    reads: list[ScannerEvent] = []

    def forward(event: ScannerEvent) -> None:
        reads.append(event)
        sink(event)

    camera = CameraScanner(lambda: SimulatedCamera([demo.token(bike.vehicle_id)], level=2, frames_each=6),
                           forward, max_fps=20)
    camera.start()
    try:
        decision = demo.tracker.next(1, "decision", 10)
        assert decision is not None and decision["ok"] is True, decision
        assert decision["plate"] == mask_plate(bike.plate)
        threading.Event().wait(0.5)
        assert sum(isinstance(e, ScanRead) for e in reads) == 1  # six frames of one phone: one scan
        assert demo.tracker.next(1, "decision", 0.5) is None
    finally:
        camera.close()


def test_camera_degraded_modes_and_recovery() -> None:
    events: queue.Queue[Any] = queue.Queue()
    opened: list[int] = []

    def open_source() -> SimulatedCamera:
        opened.append(1)
        if len(opened) == 1:
            return SimulatedCamera(["X"], dark=True, lose_after=40)  # covered lens, then unplugged
        return SimulatedCamera(["SPBU2:RECOVERED"], level=0)

    camera = CameraScanner(open_source, events.put, max_fps=100, dark_after=5, lost_after=3,
                           reopen_s=0.1)
    camera.start()
    try:
        assert wait_for(events, lambda e: e == ScannerState(True))
        assert wait_for(events, lambda e: e == ScannerNotice("too_dark"))
        assert wait_for(events, lambda e: e == ScannerState(False))
        assert wait_for(events, lambda e: e == ScannerNotice("camera_lost"))
        assert wait_for(events, lambda e: e == ScannerState(True))
        assert wait_for(events, lambda e: isinstance(e, ScanRead), 10).text == "SPBU2:RECOVERED"
    finally:
        camera.close()


def test_scanner_setting_picks_the_driver(tmp_path: Path) -> None:
    import cv2

    from hal.camera import CameraScanner as Camera
    from hal.hid_scanner import HidScanner
    from hal.scanner import SerialScanner
    from hal.scanner_select import open_scanner
    from simulators.camera import Scene, render

    events: queue.Queue[Any] = queue.Queue()
    assert isinstance(open_scanner("/dev/ttyACM9", events.put), SerialScanner)
    assert isinstance(open_scanner("hid:/dev/input/event9", events.put), HidScanner)
    cv2.imwrite(str(tmp_path / "a.png"), render(Scene("SPBU2:FROM A FOLDER", 1, "phone", 3)))
    camera = open_scanner(f"camera:{tmp_path}", events.put)
    assert isinstance(camera, Camera)
    camera.start()
    try:
        assert wait_for(events, lambda e: isinstance(e, ScanRead), 10).text == "SPBU2:FROM A FOLDER"
    finally:
        camera.close()


def test_a_dark_camera_is_told_to_the_attendant(demo: DemoStation) -> None:
    assert demo.station is not None
    alerts: list[dict[str, Any]] = []
    demo.station.listeners.append(lambda e: alerts.append(e) if e["type"] == "alert" else None)
    camera = CameraScanner(lambda: SimulatedCamera(["X"], dark=True), demo.station._scanner_sink(2),
                           max_fps=50, dark_after=5)
    camera.start()
    try:
        line = attendant_line("id", "scanner_too_dark", pump=2)
        assert wait_until(lambda: line in demo.lines, 10), demo.lines[-5:]
        alert = next(a for a in alerts if a.get("alert") == "scanner_too_dark")
        assert alert["pump"] == 2
        validate("event", alert)
        assert demo.tracker.next(2, "decision", 0.2) is None  # a warning, not a refusal
    finally:
        camera.close()


def test_video_file_source_through_the_camera_scanner(tmp_path: Path) -> None:
    import cv2

    from hal.camera import OpenCvSource
    from simulators.camera import HEIGHT, WIDTH

    video = tmp_path / "pump.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10, (WIDTH, HEIGHT), isColor=False)
    sim = SimulatedCamera(["SPBU2:FROM A VIDEO"], level=1, frames_each=5)
    for _ in range(8):
        frame = sim.read()
        assert frame is not None
        writer.write(frame)
    writer.release()
    events: queue.Queue[Any] = queue.Queue()
    camera = CameraScanner(lambda: OpenCvSource(str(video)), events.put, max_fps=50)
    camera.start()
    try:
        assert wait_for(events, lambda e: isinstance(e, ScanRead), 10).text == "SPBU2:FROM A VIDEO"
    finally:
        camera.close()
