"""The fleet benchmark's overspend arithmetic (tests/bench/fleet.py): a hop's gap runs from the
latest close of the vehicle's earlier fills to the next scan, negative while one still flows,
and only litres beyond what the quota left count against the hop."""

from __future__ import annotations

from typing import Any

from tests.bench.fleet import hops, overspend


def fill(station: str, scan: float, close: float, ml: int) -> dict[str, Any]:
    return {"vid": 7, "station": station, "label": "hopper", "closed": True, "ml": ml, "wall": close,
            "scan_wall": scan, "stale": False}


def scan(station: str, at: float, ok: bool = True) -> dict[str, Any]:
    return {"vid": 7, "station": station, "label": "hopper", "ok": ok, "reason": "", "ml": 0, "want": 60_000,
            "stale": False, "wall": at}


def test_gaps_and_litres_beyond_the_quota_per_hop() -> None:
    closes = [fill("A", 0.0, 3.0, 60_000), fill("B", 10.0, 13.0, 20_000), fill("C", 12.0, 15.0, 5_000)]
    # B: 7 s after A closed, the quota was gone: all 20 L beyond it. C: scanned while B still
    # flowed (a copy, not a hop): gap -1 s, and its 5 L are beyond the quota too.
    assert hops(closes, 60_000) == [(7.0, 20_000), (-1.0, 5_000)]


def test_only_hops_slower_than_p99_count_for_the_target() -> None:
    log = [scan("A", 0.0), fill("A", 0.0, 3.0, 60_000), scan("B", 3.5), fill("B", 3.5, 6.0, 10_000),
           scan("C", 20.0), fill("C", 20.0, 22.0, 0)]
    out = overspend(log, {7: "hopper"}, {7: "private_car"}, p99_s=1.0)["hoppers_links_up"]
    assert out["hops"] == 2 and out["hops_slower_than_p99"] == 1
    assert out["excess_l_after_hops_faster_than_p99"] == 10.0  # B came 0.5 s after A closed
    assert out["excess_l_after_hops_slower_than_p99"] == 0.0  # C was stopped at 0 L
    assert out["slower_than_p99"] == 0  # the vehicle had a hop faster than p99
