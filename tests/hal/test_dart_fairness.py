"""The DART line master is fair: a dead pump never blocks the others, and a STOP reaches
the wire within one frame time whatever the other pumps do. Sans-IO, on a simulated line
with wire times at 9600 baud (11 bits a byte), pumps that answer in a few milliseconds,
and dead pumps that never answer."""

from __future__ import annotations

import pytest

from hal import dart_proto as d
from hal.dart_master import DartMaster
from tests.bench.dart_line import BYTE_MS, FirstPumpMaster, Line, p99, stop_latencies


@pytest.mark.parametrize("dead", [set(), {0x50}, {0x50, 0x53}], ids=["none", "one", "two"])
def test_stop_to_wire_p99_under_250_ms_with_dead_pumps(dead: set[int]) -> None:
    latencies, lost, line = stop_latencies(dead, 400, seed=len(dead))
    assert len(latencies) > 250 and lost == 0
    assert p99(latencies) <= 250, sorted(latencies)[-10:]
    for addr in dead:
        assert line.master.out_of_service[addr]


def test_dead_first_pump_does_not_starve_the_next_one() -> None:
    """The reported failure: pump 0x50 silent, everything went to it and nothing to 0x51."""
    line = Line({0x50}, seed=7)
    line.master.send(0x50, d.cmd(d.CMD_AUTHORIZE))  # a command the dead pump will never ACK
    line.run_until(20_000)
    frames = line.master.frames_to
    assert frames[0x51] > 40  # about one turn in 7 x 50 ms
    assert frames[0x50] <= 5 + 20_000 // line.master.slow_poll_ms + 1  # misses, then one try per period
    line.master.send(0x51, d.cmd(d.CMD_STOP), urgent=True)
    asked = line.now
    line.run_until(asked + 300)
    assert line.stop_wire[0x51] and line.stop_wire[0x51][0] - asked <= 250


def test_a_stop_never_overtakes_the_authorize_it_cancels() -> None:
    line = Line(set(), seed=1)
    line.run_until(1500)
    line.master.send(0x52, d.cmd(d.CMD_AUTHORIZE))
    line.master.send(0x52, d.cmd(d.CMD_STOP), urgent=True)
    seen: list[bytes] = []
    decoder = d.LineDecoder()
    while line.master.pending(0x52) and line.now < 5000:
        frame = line.master.due(int(line.now))
        if frame is None:
            line.now += 1
            continue
        if frame[0] == 0x52:
            seen += [e[3] for e in decoder.feed(frame) if e[0] == "frame"]
        line.now += len(frame) * BYTE_MS
        reply = line.answer(frame[0], frame)
        if reply:
            line.now += 5
            line.master.feed(reply, int(line.now))
    assert seen[:2] == [d.cmd(d.CMD_AUTHORIZE), d.cmd(d.CMD_STOP)]


def test_repeated_queries_are_merged() -> None:
    master = DartMaster([0x50])
    for _ in range(5):
        master.send(0x50, d.cmd(d.CMD_RETURN_STATUS) + d.request_totals(1))
    assert master.pending(0x50) == 2  # the start-up probe and one query


def test_the_old_master_starves_the_line_behind_a_dead_pump() -> None:
    """The baseline this master replaces, on the same line: a STOP never reaches a live pump
    while a command for the dead pump 0x50 is queued (why the rules above exist)."""
    latencies, lost, _ = stop_latencies({0x50}, 30, seed=1, master=FirstPumpMaster(list(range(0x50, 0x58))),
                                        give_up_ms=2000)
    assert lost > len(latencies)


def test_a_stop_to_a_dead_pump_does_not_jump_ahead_of_live_pumps() -> None:
    line = Line({0x50}, seed=3)
    line.run_until(3000)
    line.master.send(0x50, d.cmd(d.CMD_STOP), urgent=True)  # stays queued: 0x50 never answers
    line.run_until(8000)
    asked = line.now
    line.master.send(0x54, d.cmd(d.CMD_STOP), urgent=True)
    line.run_until(asked + 400)
    assert line.stop_wire[0x54] and line.stop_wire[0x54][0] - asked <= 250
