"""`spbu hw test`: a field technician's step-by-step check of a relay board or a Wayne DART
pump (real or simulated): link, authorise and stop, nozzle switch, metering, dead-man,
E-stop (relay board). Each step prints PASS, FAIL or SKIP with what was seen; steps that
need a person ask for it. A skipped step is not a passed one: the summary counts it apart,
and the exit status is 0 only when every required step passed (1: a step failed; 2: none
failed but a required step was skipped, so the check is incomplete)."""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from hal.dart_pump import DartPumps
from hal.relay_board import BoardEnd, BoardHello, BoardLink, BoardStatus, NozzleChange, RelayBoard

TEST_AUTH_ID = 0xFFFF0000  # far above any session id the agent uses


@dataclass
class Step:
    name: str
    passed: bool | None  # None: skipped
    detail: str
    required: bool = True


EXIT_PASSED, EXIT_FAILED, EXIT_INCOMPLETE = 0, 1, 2


def summary(steps: list[Step]) -> tuple[str, int]:
    """The last line a technician reads, and the exit status."""
    passed = sum(1 for s in steps if s.passed)
    failed = sum(1 for s in steps if s.passed is False)
    skipped = [s for s in steps if s.passed is None]
    line = f"{passed} passed, {failed} failed, {len(skipped)} skipped"
    missing = [s.name for s in skipped if s.required]
    if failed:
        return line, EXIT_FAILED
    if missing:
        return f"{line} (INCOMPLETE: not checked: {', '.join(missing)})", EXIT_INCOMPLETE
    return line, EXIT_PASSED


class BoardTester:
    def __init__(self, port: str, channel: int, out: TextIO, ask: Callable[[str], bool], dart: bool = False) -> None:
        self.events: queue.Queue[Any] = queue.Queue()
        self.dart = dart
        self.board: RelayBoard | DartPumps
        if dart:
            self.board = DartPumps(port, self.events.put, channels=channel + 1)
        else:
            self.board = RelayBoard(port, self.events.put)
        self.channel = channel
        self.out = out
        self.ask = ask
        self.steps: list[Step] = []
        self.status: BoardStatus | None = None

    def _pump(self, seconds: float, until: Callable[[Any], bool] | None = None) -> Any:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.board.keep_alive()
            try:
                event = self.events.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if isinstance(event, BoardStatus) and event.channel == self.channel:
                self.status = event
            if until is not None and until(event):
                return event
        return None

    def _query(self) -> BoardStatus | None:
        self.status = None
        self.board.query(self.channel)
        self._pump(1.0, lambda e: isinstance(e, BoardStatus) and e.channel == self.channel)
        return self.status

    def record(self, name: str, passed: bool | None, detail: str, required: bool = True) -> bool:
        self.steps.append(Step(name, passed, detail, required))
        word = "SKIP" if passed is None else "PASS" if passed else "FAIL"
        print(f"{word:4}  {name}: {detail}", file=self.out, flush=True)
        return bool(passed)

    def run(self) -> int:
        self.board.start()
        try:
            self._run()
        finally:
            self.board.stop(self.channel)
            self._pump(0.2)
            self.board.close()
        line, code = summary(self.steps)
        print(line, file=self.out, flush=True)
        return code

    def _run(self) -> None:
        if not self._connect():
            return
        self._authorise_and_meter()
        self._stop_and_dead_man()
        hello = [e for e in list(self.events.queue) if isinstance(e, BoardHello)]
        if hello and not self.dart:
            self.record("firmware", True, f"version {hello[0].firmware}, {hello[0].channels} channels",
                        required=False)

    def _connect(self) -> bool:
        """Port, answer, E-stop loop: the rest means nothing without them."""
        link = self._pump(3.0, lambda e: isinstance(e, BoardLink) and e.connected)
        if not self.record("serial port", link is not None, f"{self.board.port_name} opened" if link else
                           "cannot open the port"):
            return False
        self._pump(0.3)  # heartbeats reach the board
        status = self._query()
        if status is None:
            self.record("board answers", False, "no answer to QUERY within 1 s (wiring, baud?)")
            return False
        self.record("board answers", True, "STATUS received")
        if not self.dart:
            self.record("E-stop loop closed", not status.estop, "E-stop latched: release it and press the "
                        "board's reset button" if status.estop else "not latched")
        else:
            self._pump(0.5)  # the driver's start-up probe and STOP settle first
        return True

    def _authorise_and_meter(self) -> None:
        self.board.authorize(self.channel, TEST_AUTH_ID, 1_000_000)
        self._pump(0.3)
        status = self._query()
        what = "pump authorised" if self.dart else "relay"
        self.record(f"{'authorise' if self.dart else 'relay closes on AUTHORIZE'}", bool(status and status.relay),
                    f"{what} reported closed" if status and status.relay else f"{what} did not close")
        if self.ask(f"Lift the nozzle on channel {self.channel}"):
            event = self._pump(15.0, lambda e: isinstance(e, NozzleChange) and e.channel == self.channel and e.up)
            self.record("nozzle switch", event is not None, "nozzle up seen" if event else "no nozzle-up in 15 s")
            before = self.status.pulses if self.status else 0
            self._pump(2.0)
            status = self._query()
            pulses = (status.pulses if status else 0) - before
            unit = "x 0.01 L" if self.dart else "pulses"
            self.record("metering", pulses > 0, f"{pulses} {unit} in 2 s of flow")
        else:
            self.record("nozzle switch", None, "needs a person at the pump")
            self.record("metering", None, "needs a person at the pump")

    def _stop_and_dead_man(self) -> None:
        self.board.stop(self.channel)
        end = self._pump(3.0, lambda e: isinstance(e, BoardEnd) and e.auth_id == TEST_AUTH_ID)
        status = self._query()
        self.record("stop", end is not None and bool(status and not status.relay),
                    f"ended ({end.reason}), {end.pulses} counted" if end else "no end of fill after STOP")
        if end is not None and self.ask(f"Hang the nozzle on channel {self.channel}"):
            self._pump(1.0)
        # Dead-man: authorise, then say nothing; the board must drop the relay by itself.
        self.board.authorize(self.channel, TEST_AUTH_ID + 1, 1_000_000)
        self._pump(0.3)
        start = time.monotonic()
        self.board.hold_heartbeats(True)  # stop heartbeats, as if the agent had died
        end = self._pump(3.0, lambda e: isinstance(e, BoardEnd) and e.auth_id == TEST_AUTH_ID + 1)
        self.board.hold_heartbeats(False)
        waited = time.monotonic() - start
        if self.dart:
            # A DART pump head stops by itself when its controller stops polling; the end is
            # seen once polling resumes.
            self.board.hold_heartbeats(True)
            time.sleep(2.5)
            self.board.hold_heartbeats(False)
            end = self._pump(3.0, lambda e: isinstance(e, BoardEnd))
            self.record("pump stops when polling stops", end is not None,
                        f"fill ended ({end.reason}) while the line was silent" if end else "pump kept running")
            return
        self.record("dead-man drops the relay", end is not None and end.reason == "heartbeat_lost",
                    f"fill ended {waited:.2f} s after the last heartbeat" if end else "relay never dropped")
        self._estop()

    def _estop(self) -> None:
        if self.ask("Press the E-stop (leave it pressed)"):
            self.board.authorize(self.channel, TEST_AUTH_ID + 2, 1_000_000)
            self._pump(0.5)
            status = self._query()
            ok = bool(status and status.estop and not status.relay)
            self.record("E-stop", ok, "latched, relay refused" if ok else "E-stop not seen or relay closed")
            self.ask("Release the E-stop and press the board's reset button")
            self._pump(0.5)
        else:
            self.record("E-stop", None, "needs a person at the board")


def prompt_stdin(message: str, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> bool:
    if stdin.closed:
        return False
    print(f"....  {message}, then press Enter (or type s and Enter to skip)", file=out, flush=True)
    answer = stdin.readline()
    return answer != "" and answer.strip().lower() != "s"


def run_hw_test(port: str, channel: int, interactive: bool, dart: bool = False) -> int:
    ask = prompt_stdin if interactive else (lambda message: False)
    return BoardTester(port, channel, sys.stdout, ask, dart=dart).run()
