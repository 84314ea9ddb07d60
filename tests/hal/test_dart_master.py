"""The DART line master, sans-IO: polling, commands until ACKed, pump replies delivered once,
turnaround and response windows, pumps going offline and back."""

from __future__ import annotations

from hal import dart_proto as d
from hal.dart_master import DartMaster


def probed(addresses: list[int], **kwargs: int) -> tuple[DartMaster, int]:
    """A master past its start-up probes (each pump ACKs its RETURN_STATUS probe, tx 0)."""
    master = DartMaster(addresses, **kwargs)
    now = 0
    for addr in addresses:
        assert master.due(now) == d.encode_frame(addr, d.DATA, d.cmd(d.CMD_RETURN_STATUS))
        master.feed(d.encode_short(addr, d.ACK), now + 5)
        now += 50
    return master, now


def test_first_frame_to_each_pump_is_a_status_probe() -> None:
    master = DartMaster([0x50, 0x51])
    assert master.due(0) == d.encode_frame(0x50, d.DATA | 0, d.cmd(d.CMD_RETURN_STATUS))
    master.feed(d.encode_short(0x50, d.ACK | 0), 5)
    assert master.due(50) == d.encode_frame(0x51, d.DATA | 0, d.cmd(d.CMD_RETURN_STATUS))


def test_polls_pumps_in_turn_and_waits_for_the_answer_window() -> None:
    master, t = probed([0x50, 0x51])
    assert master.online == {0x50: True, 0x51: True}
    assert master.due(t) == d.encode_short(0x50, d.POLL)
    assert master.due(t + 50) is None  # still inside the 120 ms response window
    assert master.feed(d.encode_short(0x50, d.EOT), t + 60) == []
    assert master.due(t + 80) is None  # 35 ms turnaround after the answer
    assert master.due(t + 95) == d.encode_short(0x51, d.POLL)


def test_command_repeated_until_acked_with_its_block_number() -> None:
    master, t = probed([0x50])
    master.send(0x50, d.cmd(d.CMD_AUTHORIZE))
    first = master.due(t)
    assert first == d.encode_frame(0x50, d.DATA | 1, d.cmd(d.CMD_AUTHORIZE))
    assert master.due(t + 130) == first  # no answer in 120 ms: sent again
    master.feed(d.encode_short(0x50, d.ACK | 1), t + 140)
    assert master.pending(0x50) == 0
    master.send(0x50, d.cmd(d.CMD_STOP))
    assert master.due(t + 200) == d.encode_frame(0x50, d.DATA | 2, d.cmd(d.CMD_STOP))  # next block number


def test_pump_data_is_acked_and_a_repeat_is_not_delivered_twice() -> None:
    master, t = probed([0x50])
    reply = d.encode_frame(0x50, d.DATA | 3, d.status(d.ST_FILLING))
    master.due(t)
    events = master.feed(reply, t + 10)
    assert ("reply", 0x50, [(d.DC1_STATUS, bytes([d.ST_FILLING]))]) in events
    assert master.due(t + 50) == d.encode_short(0x50, d.ACK | 3)
    master.due(t + 100)  # poll again; our ACK was lost, the pump repeats block 3
    assert master.feed(reply, t + 110) == []
    assert master.due(t + 150) == d.encode_short(0x50, d.ACK | 3)


def test_misses_take_a_pump_offline_once_and_an_answer_brings_it_back() -> None:
    master, now = probed([0x50], max_misses=3)
    now += 100
    offline = []
    for _ in range(4):
        master.due(now)
        now += 130
        offline += [e for e in master.feed(b"", now) if e[0] == "online"]
        master.due(now)  # registers the miss
    assert master.online[0x50] is False and master.out_of_service[0x50]
    assert len(offline) <= 1
    assert master.due(now + 100) is None  # out of service: tried again only after the slow period
    assert master.due(now + 2000) == d.encode_short(0x50, d.POLL)
    events = master.feed(d.encode_short(0x50, d.EOT), now + 2010)
    assert ("online", 0x50, True) in events
    assert master.online[0x50] is True and not master.out_of_service[0x50]


def test_answers_from_a_pump_not_asked_are_ignored() -> None:
    master, t = probed([0x50, 0x51])
    master.due(t)  # polls 0x50
    assert master.feed(d.encode_frame(0x51, d.DATA, d.status(d.ST_RESET)), t + 10) == []


def test_driver_fills_to_a_volume_and_to_an_amount_preset_over_a_pty() -> None:
    """The pyserial driver against the DART pump simulator: a volume preset and an amount
    preset (prepay) each stop the pump where they should, metered by the pump head."""
    import queue
    import time
    from typing import Any

    from hal.dart_pump import DartPumps
    from hal.relay_board import BoardEnd
    from simulators.dart_pump import DartPumpSim
    from tests.helpers import wait_until

    line = DartPumpSim(pumps=1, flow_lps=5.0, prices=(10_000,))
    line.start()
    events: queue.Queue[Any] = queue.Queue()
    driver = DartPumps(line.path, events.put, channels=1)
    driver.start()

    def end_of_fill() -> BoardEnd:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            driver.keep_alive()
            try:
                event = events.get(timeout=0.02)
            except queue.Empty:
                continue
            if isinstance(event, BoardEnd):
                return event
        raise AssertionError("no end of fill")

    def alive_and(check: Any) -> bool:
        driver.keep_alive()
        return bool(check())

    try:
        assert wait_until(lambda: alive_and(lambda: driver.connected), 5)
        time.sleep(0.3)
        start = line.totaliser_ml(0)
        driver.authorize(0, 1, 250)  # 2.50 L
        assert wait_until(lambda: alive_and(lambda: line.relay_closed(0)), 5)
        line.lift_nozzle(0)
        end = end_of_fill()
        line.hang_nozzle(0)
        assert end.reason == "preset_reached" and 250 <= end.pulses <= 252
        assert end.pulses * 10 == line.totaliser_ml(0) - start
        assert end.totaliser >= end.pulses  # the END carries the pump's totals after the fill
        time.sleep(0.3)
        start = line.totaliser_ml(0)
        driver.authorize_amount(0, 2, 15_000)  # Rp 15,000 at Rp 10,000/L = 1.50 L
        assert wait_until(lambda: alive_and(lambda: line.relay_closed(0)), 5)
        line.lift_nozzle(0)
        end = end_of_fill()
        assert end.auth_id == 2 and end.reason == "preset_reached" and 150 <= end.pulses <= 152
        assert end.pulses * 10 == line.totaliser_ml(0) - start
    finally:
        driver.close()
        line.close()
