"""Fleet-update benchmark: the relay-board firmware over its UART, and release verification.

    python tests/bench/update.py --json OUT [--runs N] [--release-mb M]

firmware: the agent (agent/updates/firmware.converge) updates the simulated board (its
firmware running from a flash directory, simulators/relay_board.py) on a pseudo-terminal
with this checkout's firmware files: seconds on the pty, bytes on the wire (both ways), and
what those bytes take at the board's real 115200 baud (10 bits a byte). Baseline: the
same files sent stop-and-wait (a window of one frame), the naive way to write a file over
a half-duplex link.

verify: a release of `--release-mb` MB cut into 256 KiB chunks: each chunk checked and
kept (agent/allowlist/chunks.ChunkStore.put), then assembled and checked whole. Baseline: one
sha256 over the same bytes (the least any verification must do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.allowlist.chunks import ChunkStore  # noqa: E402
from agent.allowlist.manifest import Blob, chunk_digests  # noqa: E402
from agent.updates.firmware import converge  # noqa: E402
from hal import relay_proto as rp  # noqa: E402
from hq import software_release as sr  # noqa: E402
from simulators.flash import FIRMWARE_FILES, seed_flash  # noqa: E402
from simulators.relay_board import RelayBoardSim  # noqa: E402
from tests.release_fixtures import firmware_files  # noqa: E402

BAUD_BYTES_S = 115200 / 10


class CountingLink(rp.Link):
    """The host's link, counting bytes both ways."""

    sent = 0
    received = 0

    def take_output(self) -> bytes:
        out = super().take_output()
        CountingLink.sent += len(out)
        return out

    def feed(self, data: bytes, now: int) -> list:  # type: ignore[type-arg]
        CountingLink.received += len(data)
        return super().feed(data, now)


def firmware_run(work: Path, version: int, window: int) -> dict[str, float]:
    flash = work / f"flash-{version}-{window}"
    seed_flash(flash)
    release = work / f"release-{version}"
    if not release.exists():
        wheel = work / "spbu_edge-0.2.0-py3-none-any.whl"
        wheel.write_bytes(b"wheel")
        sr.build(release, "0.2.0", 2, [wheel], firmware=firmware_files(version, into=work), firmware_version=version)
        sr.sign(release, [])
    board = RelayBoardSim(channels=2, flash=flash, trial_ms=5000)
    board.start()
    original = rp.Link  # the host driver (hal/relay_board.py) makes its link from here
    CountingLink.sent = CountingLink.received = 0
    rp.Link = lambda: CountingLink(window=window)  # type: ignore[misc,assignment]
    try:
        started = time.perf_counter()
        outcome = converge(board.path, 115200, release, trial_ms=5000)
        took = time.perf_counter() - started
    finally:
        rp.Link = original  # type: ignore[misc]
        board.close()
    if not outcome.ok:
        raise RuntimeError(outcome.detail)
    wire = CountingLink.sent + CountingLink.received
    return {"seconds_pty": took, "wire_bytes": wire, "seconds_at_115200": wire / BAUD_BYTES_S}


def verify_run(work: Path, size_mb: int) -> dict[str, float]:
    data = os.urandom(size_mb * 1024 * 1024)
    size = 256 * 1024
    digests = chunk_digests(data, size)
    blob = Blob(hashlib.sha256(data).hexdigest(), len(data), tuple(digests), size)
    store = ChunkStore(work / f"chunks-{time.monotonic_ns()}")
    started = time.perf_counter()
    for i, digest in enumerate(digests):
        store.put(digest, blob.chunk_length(i), data[i * size:(i + 1) * size])
    assembled = store.assemble(blob)
    ours = time.perf_counter() - started
    assert assembled == data
    started = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    baseline = time.perf_counter() - started
    store.clear()
    return {"ours_s": ours, "sha256_only_s": baseline, "mb_per_s": size_mb / ours}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--release-mb", type=int, default=32)
    args = parser.parse_args()
    firmware_bytes = sum((ROOT / f).stat().st_size for f in FIRMWARE_FILES)
    with tempfile.TemporaryDirectory(prefix="spbu-bench-update-") as tmp:
        work = Path(tmp)
        ours = [firmware_run(work, 2 + i, 8) for i in range(args.runs)]
        naive = [firmware_run(work, 2 + i, 1) for i in range(args.runs)]
        verify = [verify_run(work, args.release_mb) for _ in range(args.runs)]

    def med(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    results: dict[str, Any] = {
        "firmware_windowed": {k: med(ours, k) for k in ours[0]} | {"firmware_bytes": firmware_bytes},
        "baseline_stop_and_wait": {k: med(naive, k) for k in naive[0]},
        "release_verify": {k: med(verify, k) for k in verify[0]},
    }
    at_baud = results["firmware_windowed"]["seconds_at_115200"]
    report = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "params": {"runs": args.runs, "release_mb": args.release_mb, "firmware_files": len(FIRMWARE_FILES)},
        "results": results,
        "targets": {
            "firmware_update_s_at_115200": {"measured": at_baud, "target": 30.0, "met": at_baud <= 30.0},
            "release_verify_mb_per_s": {"measured": results["release_verify"]["mb_per_s"], "target": 20.0,
                                        "met": results["release_verify"]["mb_per_s"] >= 20.0},
        },
    }
    args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["results"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
