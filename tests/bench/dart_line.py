"""DART line fairness: STOP-to-wire latency for every live pump on a line of eight, with
none, one and two dead pumps, on a simulated 9600-baud line (wire time 11 bits a byte,
pumps answering in 3-10 ms, the other pumps busy with queries). Sans-IO: the masters run
on simulated time, so the figures do not depend on this machine's load.

    python tests/bench/dart_line.py [--stops 400] --json OUT

Ours: hal/dart_master.py (pumps in turn, dead pumps out of service and tried every 2 s,
STOP first). Baseline, in the same run: the master before it, which always served the
first pump with queued data and retried it forever. Target: p99 <= 250 ms for every live
pump with up to two dead pumps of eight.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hal import dart_proto as d  # noqa: E402
from hal.dart_master import RESPONSE_MS, TURNAROUND_MS, DartMaster  # noqa: E402

BYTE_MS = 11 * 1000 / 9600
PUMPS = [d.ADDR_MIN + i for i in range(8)]
TARGET_MS = 250.0


class FirstPumpMaster:
    """The baseline: the first pump with queued data is always served, retried forever."""

    def __init__(self, addresses: list[int]) -> None:
        self.addresses = addresses
        self.queue: dict[int, list[bytes]] = {a: [] for a in addresses}
        self.tx = {a: 1 for a in addresses}
        self.frames_to = {a: 0 for a in addresses}
        self._await: tuple[int, int] | None = None
        self._quiet = 0
        self._ack: tuple[int, int] | None = None
        self._next = 0
        self.decoder = d.LineDecoder()

    def send(self, addr: int, data: bytes, urgent: bool = False) -> None:
        self.queue[addr].append(data)

    def due(self, now: int) -> bytes | None:
        if self._await is not None and now < self._await[1]:
            return None
        self._await = None
        if now < self._quiet:
            return None
        if self._ack is not None:
            addr, tx = self._ack
            self._ack = None
            self._quiet = now + TURNAROUND_MS
            return d.encode_short(addr, d.ACK | tx)
        for addr in self.addresses:
            if self.queue[addr]:
                self._await = (addr, now + RESPONSE_MS)
                self.frames_to[addr] += 1
                return d.encode_frame(addr, d.DATA | self.tx[addr], self.queue[addr][0])
        addr = self.addresses[self._next % len(self.addresses)]
        self._next += 1
        self._await = (addr, now + RESPONSE_MS)
        self.frames_to[addr] += 1
        return d.encode_short(addr, d.POLL)

    def feed(self, chunk: bytes, now: int) -> list[Any]:
        for event in self.decoder.feed(chunk):
            if event[0] == "error" or self._await is None or event[1] != self._await[0]:
                continue
            addr = event[1]
            self._await = None
            self._quiet = now + TURNAROUND_MS
            if event[0] == "frame":
                self._ack = (addr, event[2] & 0x0F)
            elif event[2] & 0xF0 == d.ACK and self.queue[addr]:
                self.queue[addr].pop(0)
                self.tx[addr] = (self.tx[addr] + 1) & 0x0F
        return []


class Line:
    """Eight pumps on one simulated line; `dead` pumps never answer."""

    def __init__(self, dead: set[int], seed: int, master: Any = None) -> None:
        self.master = master or DartMaster(PUMPS)
        self.dead = dead
        self.rng = random.Random(seed)
        self.now = 0.0
        self.pump_tx = {a: 0 for a in PUMPS}
        self.stop_wire: dict[int, list[float]] = {a: [] for a in PUMPS}  # times a STOP went out
        self.decoder = d.LineDecoder()

    def answer(self, addr: int, frame: bytes) -> bytes:
        event = self.decoder.feed(frame)[0]
        if event[0] == "frame":
            if any(code == d.CD1_COMMAND and data == bytes([d.CMD_STOP])
                   for code, data in d.split_transactions(event[3])):
                self.stop_wire[addr].append(self.now)
            return d.encode_short(addr, d.ACK | (event[2] & 0x0F))
        if event[2] == d.POLL and self.rng.random() < 0.3:  # the pump has news: status and volume
            tx = self.pump_tx[addr]
            self.pump_tx[addr] = (tx + 1) & 0x0F
            return d.encode_frame(addr, d.DATA | tx, d.status(d.ST_FILLING) + d.filled(1234, 12340))
        return d.encode_short(addr, d.EOT) if event[2] == d.POLL else b""

    def run_until(self, end_ms: float) -> None:
        while self.now < end_ms:
            frame = self.master.due(int(self.now))
            if frame is None:
                self.now += 1
                continue
            self.now += len(frame) * BYTE_MS
            addr = frame[0]
            if addr in self.dead:
                continue
            reply = self.answer(addr, frame)
            if reply:
                self.now += 3 + self.rng.random() * 7 + len(reply) * BYTE_MS  # pump latency + wire
                self.master.feed(reply, int(self.now))


def stop_latencies(dead: set[int], stops: int, seed: int, master: Any = None,
                   give_up_ms: float = 5000) -> tuple[list[float], int, Line]:
    """(STOP-to-wire ms of live pumps' STOPs that went out, live STOPs never sent, line)."""
    line = Line(dead, seed, master)
    line.run_until(3000)  # past the probes; the dead pumps are out of service by now
    latencies = []
    lost = 0
    live = [a for a in PUMPS if a not in dead]
    for _ in range(stops):
        for other in line.rng.sample(live, 3):  # the other pumps are busy too
            line.master.send(other, d.cmd(d.CMD_RETURN_STATUS) + d.request_totals(1))
        if dead and line.rng.random() < 0.2:  # and the agent asks a dead pump for something
            line.master.send(sorted(dead)[0], d.cmd(d.CMD_RETURN_STATUS))
        target = line.rng.choice(PUMPS)
        line.run_until(line.now + line.rng.random() * 150)  # the STOP arrives at any phase
        before = len(line.stop_wire[target])
        asked = line.now
        line.master.send(target, d.cmd(d.CMD_STOP), urgent=True)
        while len(line.stop_wire[target]) == before and line.now < asked + give_up_ms:
            line.run_until(line.now + 1)
        if target not in dead:
            if len(line.stop_wire[target]) > before:
                latencies.append(line.stop_wire[target][before] - asked)
            else:
                lost += 1
    return latencies, lost, line


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("inf")


def figures(latencies: list[float], lost: int) -> dict[str, float]:
    return {"median_ms": round(statistics.median(latencies), 1) if latencies else float("nan"),
            "p99_ms": round(p99(latencies), 1), "worst_ms": round(max(latencies), 1) if latencies else float("nan"),
            "stops_sent": len(latencies), "stops_never_sent": lost}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, default=400)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {"fair_master": {}, "baseline_first_pump_master": {}}
    targets = {}
    for dead in (set(), {0x50}, {0x50, 0x53}):
        name = f"{len(dead)}_dead"
        ours, lost, _ = stop_latencies(dead, args.stops, seed=len(dead))
        results["fair_master"][name] = figures(ours, lost)
        base, base_lost, _ = stop_latencies(dead, max(20, args.stops // 10), seed=len(dead),
                                            master=FirstPumpMaster(PUMPS), give_up_ms=2000)
        results["baseline_first_pump_master"][name] = figures(base, base_lost)
        measured = p99(ours) if not lost else float("inf")
        targets[f"stop_to_wire_p99_ms_{name}"] = {"measured": round(measured, 1), "target": TARGET_MS,
                                                  "met": measured <= TARGET_MS}
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "params": {"stops": args.stops, "pumps": len(PUMPS), "baud": 9600, "response_ms": RESPONSE_MS,
                   "turnaround_ms": TURNAROUND_MS, "simulated_time": True},
        "results": results,
        "targets": targets,
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
