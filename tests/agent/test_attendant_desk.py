"""The attendant's side of the agent without a browser: request parsing (fuzzed), the PIN
throttle, the [attendant] configuration, bad requests, and the scanner's beep commands on a
real station with the scanner simulator on a pty."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.attendant import topics
from agent.attendant.config import AttendantConfig, AttendantConfigError, Person, hash_pin, parse_attendant, parse_beep
from agent.attendant.desk import AttendantDesk
from agent.attendant.throttle import MAX_WAIT_S, Throttle
from agent.cli.demo import UNREGISTERED_ID, DemoStation
from agent.journal import Journal
from agent.payments.desk import PaymentChoice
from simulators.broker import MosquittoBroker

ST = "34.401.01"


@given(st.text(max_size=80))
def test_request_topics_parse_or_are_ignored(tail: str) -> None:
    parsed = topics.parse_request(ST, f"att/v1/{ST}/in/{tail}")
    if parsed is not None:
        device, pump, verb = parsed
        assert device and "/" not in device
        assert (pump is None and verb == "shift") or (pump is not None and verb in topics.VERBS)


def test_request_topics_round_trip() -> None:
    assert topics.parse_request(ST, topics.pump_in(ST, "pulau-1", 2, "stop")) == ("pulau-1", 2, "stop")
    assert topics.parse_request(ST, topics.shift_in(ST, "pulau-1")) == ("pulau-1", None, "shift")
    assert topics.parse_request(ST, topics.pump_in("34.401.02", "pulau-1", 2, "stop")) is None
    assert topics.parse_request(ST, f"att/v1/{ST}/in/pulau-1/2/refuel") is None


def test_throttle_waits_after_failures_and_doubles_up_to_a_cap() -> None:
    throttle = Throttle(max_failures=3, lockout_s=30)
    keys = ("device:a", "number:07")
    assert throttle.failed(keys, 0.0) == 0 and throttle.failed(keys, 1.0) == 0
    assert throttle.failed(keys, 2.0) == 30  # the third: wait 30 s
    assert throttle.wait_s(("number:07",), 10.0) == 22  # the number waits on any device
    assert throttle.failed(keys, 40.0) == 60  # and the next failure doubles it
    for at in range(10):
        wait = throttle.failed(keys, 100.0 + at)
    assert wait == MAX_WAIT_S
    throttle.succeeded(keys)
    assert throttle.wait_s(keys, 101.0) == 0


def test_attendant_config_rejects_bad_tables() -> None:
    good = {"people": {"07": {"name": "Budi", "pin": hash_pin("1234")}}, "devices": {"pulau-1": [1, 2]}}
    cfg = parse_attendant(good, {1, 2})
    assert cfg is not None and cfg.devices == {"pulau-1": (1, 2)} and cfg.people["07"].name == "Budi"
    bad: dict[str, Any]
    for bad in ({"people": {"x7": {"pin": hash_pin("1234")}}}, {"people": {"07": {"pin": "1234"}}},
                {"devices": {"Pulau 1": [1]}}, {"devices": {"pulau-1": [9]}}, {"devices": {"pulau-1": []}},
                {"max_failures": 0}, {"surprise": 1}):
        with pytest.raises(AttendantConfigError):
            parse_attendant(bad, {1, 2})
    with pytest.raises(AttendantConfigError):
        hash_pin("12a4")
    assert parse_beep({"good_read_hex": "1b 42 0d", "bad_read_hex": ""}) == (b"\x1bB\r", b"")
    with pytest.raises(AttendantConfigError):
        parse_beep({"good_read_hex": "zz"})


class Actions:
    def __init__(self) -> None:
        self.scans: list[tuple[int, str]] = []

    def attendant_scan(self, pump: int, text: str) -> None:
        self.scans.append((pump, text))

    def attendant_pay(self, pump: int, choice: PaymentChoice) -> str:
        return "next"

    def attendant_stop(self, pump: int) -> bool:
        return False

    def pump_running(self, pump: int) -> bool:
        return False

    def totaliser_ml(self, pump: int) -> int | None:
        return 1000

    def payment_for_tx(self, tx_id: str) -> dict[str, Any] | None:
        return None


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[AttendantDesk, Actions, list[tuple[str, dict[str, Any]]]]]:
    journal = Journal(tmp_path / "journal.sqlite")
    sent: list[tuple[str, dict[str, Any]]] = []
    actions = Actions()
    cfg = AttendantConfig({"07": Person("07", "Budi", hash_pin("1234"))}, {"pulau-1": (1, 2)})
    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> bool:
        sent.append((topic, json.loads(payload)))
        return True

    yield (AttendantDesk(ST, cfg, journal, publish, actions, {1: "pertalite", 2: "solar"}, lambda product: 10_000),
           actions, sent)
    journal.close()


def test_bad_requests_get_a_clear_answer_and_change_nothing(
        desk: tuple[AttendantDesk, Actions, list[tuple[str, dict[str, Any]]]]) -> None:
    att, actions, sent = desk
    reply = topics.reply(ST, "pulau-1")
    att.handle(topics.shift_in(ST, "pulau-1"), b"\xff not json")
    assert sent[-1] == (reply, {**sent[-1][1], "reason": "bad_request"})
    att.handle(topics.shift_in(ST, "pulau-1"), json.dumps({"type": "signin", "pin": "1" * 5000}).encode())
    assert sent[-1][1]["detail"] == "request too large"
    att.handle(topics.pump_in(ST, "pulau-1", 1, "scan"), b'{"text": "SPBU2:X"}')
    assert sent[-1][1]["reason"] == "not_signed_in" and actions.scans == []
    att.handle(topics.shift_in(ST, "pulau-1"), b'{"type": "signin", "attendant": "07", "pin": "1234"}')
    assert sent[-1][1]["ok"] is True
    att.handle(topics.pump_in(ST, "pulau-1", 1, "scan"), b'{"text": 42}')
    assert sent[-1][1]["reason"] == "bad_request" and actions.scans == []
    att.handle(topics.pump_in(ST, "pulau-1", 1, "pay"), b'{"method": "gold"}')
    assert sent[-1][1]["reason"] == "bad_request"
    before = len(sent)
    att.handle(topics.shift_in(ST, "stranger"), b'{"type": "hello"}')  # not enrolled: not even answered
    assert len(sent) == before
    att.handle(topics.pump_in(ST, "pulau-1", 1, "scan"), b'{"text": "SPBU2:X"}')
    assert actions.scans == [(1, "SPBU2:X")]
    assert att.attendant_on(1) == "07" and att.attendant_on(3) is None


Desk = tuple[AttendantDesk, Actions, list[tuple[str, dict[str, Any]]]]


def test_an_open_shift_survives_a_restart(desk: Desk) -> None:
    att, actions, _ = desk
    att.handle(topics.shift_in(ST, "pulau-1"), b'{"type": "signin", "attendant": "07", "pin": "1234"}')
    again = AttendantDesk(ST, att.cfg, att.journal, lambda *a: True, actions, {1: "pertalite", 2: "solar"},
                          lambda product: 0)
    assert again.attendant_on(2) == "07"


@pytest.fixture
def beeping(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[DemoStation]:
    demo = DemoStation(pumps=1, broker=mosquitto, workdir=tmp_path, quiet=True)
    demo.start()
    assert demo.station is not None
    demo.station.config = dataclasses.replace(demo.station.config, scanner_beep=(b"\x1bG\r", b"\x1bB\r"))
    yield demo
    demo.close()


def test_serial_scanner_gets_the_good_or_bad_read_command_after_each_decision(beeping: DemoStation) -> None:
    scanner = beeping.scanners[1]
    scanner.scan(beeping.token(UNREGISTERED_ID))
    assert beeping.tracker.next(1, "decision", 5.0) is not None
    assert _read(scanner.device, b"\x1bB\r") == b"\x1bB\r"  # refused: the bad-read beep
    car = next(e for e in beeping.registry if e.category == "private_car" and e.products & 1 and e.status == "active")
    scanner.scan(beeping.token(car.vehicle_id))
    decision = beeping.tracker.next(1, "decision", 5.0)
    assert decision is not None and decision["ok"]
    assert _read(scanner.device, b"\x1bG\r") == b"\x1bG\r"  # allowed: the good-read beep


def _read(device: Any, want: bytes, timeout_s: float = 5.0) -> bytes:
    got = b""
    for _ in range(int(timeout_s / 0.1)):
        got += device.read(0.1)
        if want in got:
            return want
    return got
