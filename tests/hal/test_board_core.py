"""Relay-board safety core (hal.firmware.board_core), driven through a host-side rp.Link.

Everything is sans-IO: the host Link's output is fed to the core and the core's output
back to the host, with integer millisecond times passed explicitly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hal import relay_proto as rp
from hal.firmware.board_core import FIRMWARE_VERSION, BoardCore

Msg = tuple[int, tuple[int, ...]]

WATCHDOG = 750
SETTLE = 300
STATUS_MS = 250
HEARTBEAT_MS = 200


class Rig:
    """A board core wired to a host Link over a perfect in-memory channel."""

    def __init__(self, channels: int = 2) -> None:
        self.core = BoardCore(channels, watchdog_ms=WATCHDOG, status_ms=STATUS_MS, settle_ms=SETTLE)
        self.host = rp.Link()
        self.now = 0
        self.inbox: list[Msg] = []
        self.host_seqs: list[int] = []  # sequence numbers of every frame the host has written
        self._tap = rp.FrameDecoder()
        self.core.boot(self.now)
        self.exchange()

    def _host_to_core(self) -> None:
        data = self.host.take_output()
        self.host_seqs += [seq for seq, _, _ in self._tap.feed(data)]
        self.core.feed(data, self.now)

    def exchange(self) -> list[Msg]:
        """Deliver pending traffic both ways (including the ACKs); return what the host got."""
        self._host_to_core()
        got: list[Msg] = self.host.feed(self.core.take_output(), self.now)
        self._host_to_core()  # ACKs for what the host just received
        self.inbox += got
        return got

    def send(self, mtype: int, values: tuple[int, ...]) -> list[Msg]:
        self.host.send(mtype, values, self.now)
        return self.exchange()

    def heartbeat(self) -> list[Msg]:
        return self.send(rp.HEARTBEAT, ())

    def authorize(self, pump: int, auth_id: int, preset: int) -> list[Msg]:
        return self.send(rp.AUTHORIZE, (pump, auth_id, preset))

    def query(self, pump: int) -> tuple[int, ...]:
        got = self.send(rp.QUERY, (pump,))
        statuses = [v for t, v in got if t == rp.STATUS]
        assert len(statuses) == 1
        return statuses[0]

    def tick(self) -> list[Msg]:
        self.core.tick(self.now)
        self.host.poll(self.now)
        return self.exchange()

    def advance(self, ms: int, heartbeats: bool = True, step: int = 10) -> list[Msg]:
        """Let `ms` pass in `step` increments, ticking the core (and heartbeating if asked)."""
        got: list[Msg] = []
        end = self.now + ms
        while self.now < end:
            self.now = min(self.now + step, end)
            if heartbeats and self.now % HEARTBEAT_MS == 0:
                got += self.heartbeat()
            got += self.tick()
        return got

    def pulses(self, pump: int, count: int, gap: int = 0) -> None:
        for _ in range(count):
            self.now += gap
            self.core.pulse(pump, self.now)

    def live(self) -> None:
        """Start heartbeating so the dead-man allows authorisations."""
        self.heartbeat()


def of_type(msgs: list[Msg], mtype: int) -> list[tuple[int, ...]]:
    return [v for t, v in msgs if t == mtype]


# --- boot -----------------------------------------------------------------------------------


def test_relays_off_at_boot_and_board_hello_sent() -> None:
    core = BoardCore(3)
    host = rp.Link()
    core.boot(0, boot_id=99)
    assert [core.relay(i) for i in range(3)] == [False, False, False]
    assert host.feed(core.take_output(), 0) == [(rp.BOARD_HELLO, (FIRMWARE_VERSION, 3, 0, 99))]
    core.feed(host.take_output(), 1)  # ACK
    assert core.link.in_flight == 0


def test_board_hello_retransmitted_until_acked() -> None:
    core = BoardCore(1)
    core.boot(0)
    core.take_output()  # lost
    core.tick(core.link.retry_ms)
    host = rp.Link()
    assert host.feed(core.take_output(), 200) == [(rp.BOARD_HELLO, (FIRMWARE_VERSION, 1, 0, 0))]


# --- authorisation and the dead-man ---------------------------------------------------------


def test_authorize_without_heartbeat_is_rejected() -> None:
    rig = Rig()
    rig.now = 100
    got = rig.authorize(0, 42, 100)
    assert of_type(got, rp.END) == [(0, 42, 0, rp.END_REJECTED, 0)]
    assert not rig.core.relay(0)
    rig.advance(1000, heartbeats=False)
    assert not rig.core.relay(0)


def test_authorize_with_stale_heartbeat_is_rejected() -> None:
    rig = Rig()
    rig.now = 1000
    rig.heartbeat()
    rig.now += WATCHDOG + 1
    got = rig.authorize(0, 7, 10)
    assert of_type(got, rp.END) == [(0, 7, 0, rp.END_REJECTED, 0)]
    assert not rig.core.relay(0)


def test_authorize_at_watchdog_limit_is_accepted() -> None:
    rig = Rig()
    rig.now = 1000
    rig.heartbeat()
    rig.now += WATCHDOG
    got = rig.authorize(0, 7, 10)
    assert of_type(got, rp.END) == []
    assert rig.core.relay(0)


def test_authorize_with_heartbeat_closes_relay() -> None:
    rig = Rig()
    rig.live()
    got = rig.authorize(1, 55, 100)
    assert of_type(got, rp.END) == []
    assert rig.core.relay(1)
    assert not rig.core.relay(0)
    assert rig.host.in_flight == 0  # the AUTHORIZE was acknowledged


def test_authorize_with_empty_preset_is_rejected() -> None:
    rig = Rig()
    rig.live()
    got = rig.authorize(0, 8, 0)
    assert of_type(got, rp.END) == [(0, 8, 0, rp.END_REJECTED, 0)]
    assert not rig.core.relay(0)


def test_authorize_for_unknown_pump_is_ignored() -> None:
    rig = Rig(channels=2)
    rig.live()
    got = rig.authorize(5, 1, 10)
    assert got == []
    assert not any(rig.core.relay(i) for i in range(2))


def test_second_authorize_while_running_is_rejected() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 1, 100)
    rig.pulses(0, 3)
    got = rig.authorize(0, 2, 100)
    assert of_type(got, rp.END) == [(0, 2, 0, rp.END_REJECTED, 3)]
    assert rig.core.relay(0)  # the running fill is not disturbed
    assert rig.query(0)[2:4] == (1, 3)


# --- preset, settling, overrun --------------------------------------------------------------


def test_relay_opens_exactly_at_preset() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 9, 10)
    for n in range(1, 10):
        rig.core.pulse(0, rig.now)
        assert rig.core.relay(0), f"relay opened early at pulse {n}"
    rig.core.pulse(0, rig.now)
    assert not rig.core.relay(0)
    assert of_type(rig.exchange(), rp.END) == []  # not yet: the flow is still settling


def test_end_after_settle_includes_overrun() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 9, 10)
    rig.pulses(0, 10, gap=20)
    assert not rig.core.relay(0)
    # valve overrun: two more pulses while the relay is already open
    rig.pulses(0, 2, gap=100)
    last_pulse = rig.now
    got = rig.advance(SETTLE - 10)
    assert of_type(got, rp.END) == []
    assert of_type(got, rp.FAULT) == []  # overrun while settling is not unauthorised flow
    got = rig.advance(10)
    assert rig.now - last_pulse == SETTLE
    assert of_type(got, rp.END) == [(0, 9, 12, rp.END_PRESET_REACHED, 12)]
    assert not rig.core.relay(0)
    assert rig.advance(1000).count((rp.END, (0, 9, 12, rp.END_PRESET_REACHED, 12))) == 0


def test_end_is_acked_and_not_repeated() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 3, 2)
    rig.pulses(0, 2)
    rig.advance(2000)
    assert of_type(rig.inbox, rp.END) == [(0, 3, 2, rp.END_PRESET_REACHED, 2)]
    assert rig.core.link.in_flight == 0


def test_next_fill_after_end_counts_from_zero() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 1, 5)
    rig.pulses(0, 5)
    rig.advance(SETTLE + 50)
    rig.authorize(0, 2, 3)
    assert rig.core.relay(0)
    rig.pulses(0, 3)
    assert not rig.core.relay(0)
    rig.advance(SETTLE + 50)
    assert of_type(rig.inbox, rp.END) == [
        (0, 1, 5, rp.END_PRESET_REACHED, 5),
        (0, 2, 3, rp.END_PRESET_REACHED, 8),
    ]


def test_channels_are_independent() -> None:
    rig = Rig(channels=2)
    rig.live()
    rig.authorize(0, 10, 4)
    rig.authorize(1, 11, 100)
    rig.pulses(0, 4)
    rig.pulses(1, 6)
    assert not rig.core.relay(0)
    assert rig.core.relay(1)
    rig.advance(SETTLE + 20)
    assert of_type(rig.inbox, rp.END) == [(0, 10, 4, rp.END_PRESET_REACHED, 4)]
    assert rig.core.relay(1)


# --- stops ----------------------------------------------------------------------------------


def test_nozzle_hung_ends_fill() -> None:
    rig = Rig()
    rig.live()
    rig.core.nozzle(0, True, rig.now)
    rig.authorize(0, 4, 100)
    rig.pulses(0, 7, gap=10)
    rig.core.nozzle(0, False, rig.now)
    assert not rig.core.relay(0)
    rig.advance(SETTLE + 20)
    assert of_type(rig.inbox, rp.NOZZLE) == [(0, 1), (0, 0)]
    assert of_type(rig.inbox, rp.END) == [(0, 4, 7, rp.END_NOZZLE_HUNG, 7)]


def test_repeated_nozzle_state_is_not_reported_twice() -> None:
    rig = Rig()
    rig.core.nozzle(1, True, 0)
    rig.core.nozzle(1, True, 0)
    rig.exchange()
    assert of_type(rig.inbox, rp.NOZZLE) == [(1, 1)]


def test_host_stop_ends_fill() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(1, 6, 100)
    rig.pulses(1, 3)
    rig.send(rp.STOP, (1,))
    assert not rig.core.relay(1)
    rig.advance(SETTLE + 20)
    assert of_type(rig.inbox, rp.END) == [(1, 6, 3, rp.END_HOST_STOP, 3)]


def test_heartbeat_silence_opens_relay() -> None:
    rig = Rig()
    rig.now = 1000
    rig.heartbeat()
    rig.authorize(0, 12, 100)
    rig.pulses(0, 4)
    last_heartbeat = 1000
    rig.now = last_heartbeat + WATCHDOG
    rig.tick()
    assert rig.core.relay(0), "opened at exactly watchdog_ms"
    rig.now += 1
    rig.tick()
    assert not rig.core.relay(0)
    rig.advance(SETTLE + 20, heartbeats=False)
    assert of_type(rig.inbox, rp.END) == [(0, 12, 4, rp.END_HEARTBEAT_LOST, 4)]


def test_regular_heartbeats_keep_fill_running() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 1, 1000)
    rig.advance(5000)
    assert rig.core.relay(0)
    assert of_type(rig.inbox, rp.END) == []


def test_estop_opens_all_relays_and_latches() -> None:
    rig = Rig(channels=3)
    rig.live()
    rig.authorize(0, 20, 100)
    rig.authorize(2, 22, 100)
    rig.pulses(0, 5)
    rig.pulses(2, 1)
    rig.core.estop(rig.now)
    assert [rig.core.relay(i) for i in range(3)] == [False, False, False]
    rig.advance(SETTLE + 20)
    assert sorted(of_type(rig.inbox, rp.END)) == [
        (0, 20, 5, rp.END_ESTOP, 5),
        (2, 22, 1, rp.END_ESTOP, 1),
    ]
    # latched: new authorisations are refused, heartbeats notwithstanding
    got = rig.authorize(1, 30, 10)
    assert of_type(got, rp.END) == [(1, 30, 0, rp.END_REJECTED, 0)]
    assert not rig.core.relay(1)
    assert rig.query(1)[1] & rp.FLAG_ESTOP
    rig.advance(2000)
    got = rig.authorize(1, 31, 10)
    assert of_type(got, rp.END) == [(1, 31, 0, rp.END_REJECTED, 0)]

    rig.core.local_reset()
    assert not rig.query(1)[1] & rp.FLAG_ESTOP
    got = rig.authorize(1, 32, 10)
    assert of_type(got, rp.END) == []
    assert rig.core.relay(1)


def test_host_hello_stops_running_fill() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 40, 100)
    rig.authorize(1, 41, 100)
    rig.pulses(0, 2)
    # the host process restarts: a fresh Link announces itself
    rig.host = rp.Link()
    rig.send(rp.HOST_HELLO, (rp.VERSION, 2))
    assert not rig.core.relay(0)
    assert not rig.core.relay(1)
    rig.advance(SETTLE + 20)
    assert sorted(of_type(rig.inbox, rp.END)) == [
        (0, 40, 2, rp.END_HOST_STOP, 2),
        (1, 41, 0, rp.END_HOST_STOP, 0),
    ]
    # and the restarted host can authorise again (its sequence numbers started over)
    got = rig.authorize(0, 42, 5)
    assert of_type(got, rp.END) == []
    assert rig.core.relay(0)


# --- unauthorised flow ----------------------------------------------------------------------


def test_pulses_while_idle_raise_one_fault_and_count() -> None:
    rig = Rig()
    rig.live()
    rig.pulses(1, 5, gap=10)
    rig.exchange()
    assert of_type(rig.inbox, rp.FAULT) == [(1, rp.FAULT_UNAUTHORISED_FLOW, 1)]
    assert rig.core.unauthorised_pulses == 5
    status = rig.query(1)
    assert status[1] & rp.FLAG_FAULT
    assert not status[1] & rp.FLAG_RELAY
    assert status[4] == 5  # totaliser
    assert status[3] == 0  # not counted as a fill
    assert not rig.query(0)[1] & rp.FLAG_FAULT

    rig.core.local_reset()
    assert not rig.query(1)[1] & rp.FLAG_FAULT
    rig.pulses(1, 1)
    rig.exchange()
    assert of_type(rig.inbox, rp.FAULT) == [
        (1, rp.FAULT_UNAUTHORISED_FLOW, 1),
        (1, rp.FAULT_UNAUTHORISED_FLOW, 6),
    ]


def test_pulses_after_settled_end_are_a_fault() -> None:
    rig = Rig()
    rig.live()
    rig.authorize(0, 1, 3)
    rig.pulses(0, 3)
    rig.advance(SETTLE + 20)
    assert of_type(rig.inbox, rp.FAULT) == []
    rig.pulses(0, 1)
    rig.exchange()
    assert of_type(rig.inbox, rp.FAULT) == [(0, rp.FAULT_UNAUTHORISED_FLOW, 4)]
    assert of_type(rig.inbox, rp.END) == [(0, 1, 3, rp.END_PRESET_REACHED, 3)]


# --- status ---------------------------------------------------------------------------------


def test_status_reports_flags() -> None:
    rig = Rig()
    rig.live()
    flags = rig.query(0)[1]
    assert not flags & (rp.FLAG_RELAY | rp.FLAG_NOZZLE | rp.FLAG_ESTOP | rp.FLAG_FAULT)

    rig.core.nozzle(0, True, rig.now)
    assert rig.query(0)[1] & rp.FLAG_NOZZLE
    assert not rig.query(1)[1] & rp.FLAG_NOZZLE

    rig.authorize(0, 77, 50)
    rig.pulses(0, 4)
    status = rig.query(0)
    assert status[0] == 0
    assert status[1] & rp.FLAG_RELAY and status[1] & rp.FLAG_NOZZLE
    assert status[2:] == (77, 4, 4)

    rig.core.estop(rig.now)
    flags = rig.query(0)[1]
    assert flags & rp.FLAG_ESTOP
    assert not flags & rp.FLAG_RELAY

    rig.pulses(1, 1)
    assert rig.query(1)[1] & rp.FLAG_FAULT


def test_status_active_flag_until_end() -> None:
    rig = Rig()
    rig.live()
    assert not rig.query(0)[1] & rp.FLAG_ACTIVE
    rig.authorize(0, 3, 5)
    assert rig.query(0)[1] & rp.FLAG_ACTIVE
    rig.pulses(0, 5)
    flags = rig.query(0)[1]
    assert flags & rp.FLAG_ACTIVE and not flags & rp.FLAG_RELAY  # settling: END still to come
    rig.advance(SETTLE + 20)
    assert of_type(rig.inbox, rp.END) == [(0, 3, 5, rp.END_PRESET_REACHED, 5)]
    assert not rig.query(0)[1] & rp.FLAG_ACTIVE


def test_status_sent_periodically_while_fill_active() -> None:
    rig = Rig()
    rig.live()
    idle = rig.advance(1000)
    assert of_type(idle, rp.STATUS) == []  # nothing to report while idle
    rig.authorize(1, 5, 100)
    rig.pulses(1, 2)
    got = rig.advance(1000)
    statuses = of_type(got, rp.STATUS)
    assert 3 <= len(statuses) <= 5
    assert all(s[0] == 1 and s[2:4] == (5, 2) and s[1] & rp.FLAG_RELAY for s in statuses)


def test_query_for_unknown_pump_is_ignored() -> None:
    rig = Rig(channels=1)
    assert rig.send(rp.QUERY, (3,)) == []


# --- the link over a long session -----------------------------------------------------------


def test_authorisations_keep_working_past_sequence_wrap() -> None:
    rig = Rig()
    rig.live()
    for auth_id in range(1, 300):  # each fill: AUTHORIZE, pulses, END; heartbeats between
        got = rig.authorize(0, auth_id, 3)
        assert of_type(got, rp.END) == [], auth_id
        assert rig.core.relay(0), auth_id
        rig.pulses(0, 3)
        rig.advance(SETTLE + 20)
        assert of_type(rig.inbox, rp.END)[-1] == (0, auth_id, 3, rp.END_PRESET_REACHED, 3 * auth_id)


# --- safety invariants under random operation -----------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("heartbeat"), st.just(0)),
        st.tuples(st.just("authorize"), st.integers(0, 1), st.integers(0, 20)),
        st.tuples(st.just("pulse"), st.integers(0, 1)),
        st.tuples(st.just("nozzle"), st.integers(0, 1), st.booleans()),
        st.tuples(st.just("stop"), st.integers(0, 1)),
        st.tuples(st.just("estop"),),
        st.tuples(st.just("reset"),),
        st.tuples(st.just("wait"), st.integers(1, 1000)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_safety_invariants(ops: list[tuple[Any, ...]]) -> None:
    rig = Rig(channels=2)
    last_heartbeat = -1
    next_auth = 1
    authorized: dict[int, tuple[int, int]] = {}  # pump -> (auth_id, preset) of the latest accepted
    accepted: list[int] = []
    for op in ops:
        kind = op[0]
        if kind == "heartbeat":
            rig.heartbeat()
            last_heartbeat = rig.now
        elif kind == "authorize":
            was_on = rig.core.relay(op[1])
            got = rig.authorize(op[1], next_auth, op[2])
            rejected = [e for e in of_type(got, rp.END) if e[1] == next_auth]
            if rig.core.relay(op[1]) and not was_on:
                authorized[op[1]] = (next_auth, op[2])
                accepted.append(next_auth)
                assert rejected == []
            next_auth += 1
        elif kind == "pulse":
            rig.core.pulse(op[1], rig.now)
        elif kind == "nozzle":
            rig.core.nozzle(op[1], op[2], rig.now)
        elif kind == "stop":
            rig.send(rp.STOP, (op[1],))
        elif kind == "estop":
            rig.core.estop(rig.now)
        elif kind == "reset":
            rig.core.local_reset()
        else:
            rig.now += op[1]
            rig.tick()

        for pump in range(2):
            ch = rig.core.channels[pump]
            if rig.core.relay(pump):
                assert not rig.core.estop_latched
                assert last_heartbeat >= 0
                assert pump in authorized
                auth_id, preset = authorized[pump]
                assert ch.auth_id == auth_id
                assert preset > 0 and ch.pulses < preset
        stale = last_heartbeat < 0 or rig.now - last_heartbeat > WATCHDOG
        if kind == "wait" and stale:
            # after a tick the dead-man has been applied
            assert not any(rig.core.relay(p) for p in range(2))

    # every accepted fill ends with exactly one END once the board is left alone
    rig.advance(WATCHDOG + SETTLE + 100, heartbeats=False)
    assert not any(rig.core.relay(p) for p in range(2))
    ends = [e for e in of_type(rig.inbox, rp.END) if e[3] != rp.END_REJECTED]
    ended_ids = [e[1] for e in ends]
    assert len(ended_ids) == len(set(ended_ids))
    assert sorted(ended_ids) == accepted
