"""Relay-board safety figures, each over many runs, median and worst.

    python tests/bench/safety.py [--runs 100] --json OUT

1. Agent death to relay open: the Pi driver authorises a fill over a pseudo-terminal and
   is then killed (its thread and port closed: no byte more, as after SIGKILL); measured
   until the simulated board's relay output goes low. Baseline: the configured dead-man
   time (watchdog 750 ms), which the figure must stay near; target <= 1.0 s.
2. Preset overshoot at 40 L/min (100 pulses/L): the firmware on a simulated clock, pulses
   at the flow rate, the relay cut in the pulse interrupt. Baseline in the same run, for the
   same presets and pulse phases: a model of the preset enforced by the host from STATUS
   reports (every 250 ms, plus up to 20 ms link latency), as a Pi-only design would do it.
   Target <= 0.02 L. (Valve overrun after the cut is the dispenser's, not counted here.)
3. E-stop to relay open, in firmware loop passes and milliseconds at a 1 ms loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hal import relay_proto as rp  # noqa: E402
from hal.firmware import main as fw  # noqa: E402
from hal.relay_board import BoardLink, RelayBoard  # noqa: E402
from simulators.machine_stub import FakeMachine  # noqa: E402
from simulators.relay_board import RelayBoardSim  # noqa: E402

FLOW_LPM = 40.0
PULSES_PER_LITRE = 100


def death_to_relay_open(runs: int) -> list[float]:
    board = RelayBoardSim(channels=1, flow_lps=FLOW_LPM / 60)
    board.start()
    times = []
    try:
        for run in range(runs):
            events: queue.Queue[Any] = queue.Queue()
            driver = RelayBoard(board.path, events.put, alive_window_s=1.0)
            driver.start()
            deadline = time.monotonic() + 5
            while not (board.relay_closed(0)) and time.monotonic() < deadline:
                driver.keep_alive()
                if not any(isinstance(e, BoardLink) for e in list(events.queue)):
                    time.sleep(0.01)
                    continue
                time.sleep(0.25)  # heartbeats flowing
                driver.authorize(0, 1000 + run, 1_000_000)
                deadline2 = time.monotonic() + 2
                while not board.relay_closed(0) and time.monotonic() < deadline2:
                    driver.keep_alive()
                    time.sleep(0.005)
            board.lift_nozzle(0)
            time.sleep(random.uniform(0.0, 0.2))  # die at a random phase of the heartbeat cycle
            died = time.monotonic()
            driver.close()
            while board.relay_closed(0):
                time.sleep(0.0005)
            times.append(time.monotonic() - died)
            board.hang_nozzle(0)
            time.sleep(0.35)  # the board settles the fill before the next run
    finally:
        board.close()
    return times


class SimClock:
    def __init__(self) -> None:
        self.t = 0

    def ticks_ms(self) -> int:
        return self.t

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_ms(self, ms: int) -> None:
        self.t += ms


def firmware_rig(seed: int) -> tuple[fw.Firmware, FakeMachine, SimClock, rp.Link, int, int]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    machine = FakeMachine(write_fd)
    clock = SimClock()
    clock.t = seed % 1000
    firmware = fw.Firmware(machine, channels=1, boot_id=seed, clock=clock)
    machine.pins[fw.ESTOP_PIN].drive(0)
    return firmware, machine, clock, rp.Link(), read_fd, write_fd


def overshoot_runs(runs: int) -> tuple[list[float], list[float]]:
    """(firmware-enforced overshoot L, host-enforced overshoot L) per run."""
    ours, host_side = [], []
    pulse_interval_ms = 60_000 / (FLOW_LPM * PULSES_PER_LITRE)  # 15 ms at 40 L/min
    rng = random.Random(1)
    for run in range(runs):
        firmware, machine, clock, _host, read_fd, write_fd = firmware_rig(run)
        preset = rng.randint(200, 2000)  # 2..20 L
        firmware.core.last_heartbeat = clock.t  # as if heartbeats flow
        firmware.core._authorize(0, 1, preset, clock.t)
        firmware.step()
        machine.pins[fw.NOZZLE_PINS[0]].drive(0)
        pulses = 0
        next_pulse = float(clock.t) + rng.uniform(0, pulse_interval_ms)
        while machine.pins[fw.RELAY_PINS[0]].value() == 1 and pulses < preset * 2:
            clock.t += 1
            while next_pulse <= clock.t and machine.pins[fw.RELAY_PINS[0]].value() == 1:
                machine.pins[fw.PULSER_PINS[0]].falling_edge()
                pulses += 1
                next_pulse += pulse_interval_ms
            firmware.core.last_heartbeat = clock.t
            firmware.step()
            with contextlib.suppress(BlockingIOError):
                os.read(read_fd, 65536)  # the Pi side of the UART: drain what the board sends
        ours.append((pulses - preset) / PULSES_PER_LITRE)
        # Host-enforced baseline: the Pi sees the count in STATUS every 250 ms and sends STOP.
        status_ms = 250
        t_preset = preset * pulse_interval_ms
        seen_at = (int(t_preset // status_ms) + 1) * status_ms + rng.uniform(0, 20)  # + link latency
        host_side.append((seen_at - t_preset) / pulse_interval_ms / PULSES_PER_LITRE)
        os.close(read_fd)
        os.close(write_fd)
    return ours, host_side


def estop_runs(runs: int) -> list[int]:
    """Loop passes from E-stop pressed to every relay open (1 ms per pass)."""
    passes = []
    rng = random.Random(2)
    for run in range(runs):
        firmware, machine, clock, _host, read_fd, write_fd = firmware_rig(run)
        firmware.core.last_heartbeat = clock.t
        firmware.core._authorize(0, 1, 100_000, clock.t)
        firmware.step()
        for _ in range(rng.randint(1, 50)):
            clock.t += 1
            firmware.core.last_heartbeat = clock.t
            firmware.step()
        machine.pins[fw.ESTOP_PIN].drive(1)
        count = 0
        while machine.pins[fw.RELAY_PINS[0]].value() == 1:
            clock.t += 1
            firmware.step()
            count += 1
        passes.append(count)
        os.close(read_fd)
        os.close(write_fd)
    return passes


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "worst": round(max(values), 4), "runs": len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    death = death_to_relay_open(args.runs)
    ours, host_side = overshoot_runs(args.runs)
    estop = estop_runs(args.runs)
    results = {
        "firmware": {"death_to_relay_open_s": summary(death), "preset_overshoot_l": summary(ours),
                     "estop_loop_passes": summary([float(p) for p in estop])},
        "baseline_configured_deadman": {"death_to_relay_open_s": {"median": 0.75, "worst": 0.75 + 0.2}},
        "baseline_host_enforced_preset": {"preset_overshoot_l": summary(host_side)},
    }
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "params": {"runs": args.runs, "flow_l_per_min": FLOW_LPM, "pulses_per_litre": PULSES_PER_LITRE,
                   "watchdog_ms": fw.WATCHDOG_MS, "loop_ms": 1},
        "results": results,
        "targets": {
            "death_to_relay_open_s_worst": {"measured": max(death), "target": 1.0, "met": max(death) <= 1.0},
            "preset_overshoot_l_worst": {"measured": max(ours), "target": 0.02, "met": max(ours) <= 0.02},
        },
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
