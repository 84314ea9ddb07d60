"""Tiny-size runs of the benchmarks, so `make test` keeps them working and their JSON in shape.
The real sizes are run by hand; their figures are in docs/benchmarks.md."""

from __future__ import annotations

import ctypes.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def run_bench(name: str, out: Path, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "bench" / f"{name}.py"), *args, "--json", str(out)],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"{name} exited {done.returncode}: {done.stderr[-3000:]}"
    report: dict[str, object] = json.loads(out.read_text())
    assert {"machine", "params", "results", "targets"} <= set(report)
    return report


def test_startup_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("startup", tmp_path / "startup.json", "--transactions", "3000", "--runs", "2")
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) == {"empty_journal", "history_journal"}
    assert results["history_journal"]["journal_mb"] > results["empty_journal"]["journal_mb"]
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["ready_s_with_history"]["target"] == 1.5


def test_safety_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("safety", tmp_path / "safety.json", "--runs", "3")
    results = report["results"]
    assert isinstance(results, dict)
    firmware = results["firmware"]
    assert firmware["death_to_relay_open_s"]["runs"] == 3
    # The dead-man cannot fire before the last heartbeat's age reaches the watchdog.
    assert 0.5 <= firmware["death_to_relay_open_s"]["median"] <= 1.0
    assert firmware["estop_loop_passes"]["worst"] >= 1
    assert "baseline_host_enforced_preset" in results


@pytest.mark.skipif(ctypes.util.find_library("zbar") is None,
                    reason="Debian's libzbar0 is missing (pyzbar baseline); `make test` installs it as root")
def test_camera_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("camera", tmp_path / "camera.json", "--per-level", "2")
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) == {"pipeline", "zxing_raw", "pyzbar", "opencv_aruco"}
    assert all(row["frames"] == 10 and len(row["decoded_by_level"]) == 5 for row in results.values())
    assert results["pipeline"]["decoded_by_level"][0] == 2  # clean frames always decode
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["ms_median_ratio_to_raw"]["target"] == 1.2


def test_sync_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("sync", tmp_path / "sync.json", "--tx", "1500", "--runs", "1", "--collectors", "2")
    results = report["results"]
    assert isinstance(results, dict)
    ours = results["outbox_app_ack"]
    run = ours["runs"][0]
    assert (run["lost"], run["duplicates_stored"], run["unexpected_stored"], run["outbox_left"]) == (0, 0, 0, 0)
    assert sum(run["per_collector"].values()) == 1500
    assert results["baseline_raw_paho_qos1"]["tx_per_s_median"] > 0
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["lost"]["met"] and targets["duplicates_stored"]["met"]


def test_allowlist_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("allowlist", tmp_path / "allowlist.json", "--entries", "20000")
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) == {"ours", "sqlite", "lmdb"}
    for system in results.values():
        assert system["found"] > 0 and system["hit_p99_us"] > 0
    ours = results["ours"]
    assert ours["delta_changes"] > 0 and ours["delta_wire_bytes"] > 0
    # Exact and compact: smaller on disk than both baselines holding the same entries.
    assert ours["bytes_per_entry"] < results["sqlite"]["bytes_per_entry"]
    assert ours["bytes_per_entry"] < results["lmdb"]["bytes_per_entry"]
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["bytes_per_entry"]["target"] == 6.0 and targets["lookup_p99_us"]["target"] == 20.0


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the fsync shim (`make test` installs gcc)")
def test_wear_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("wear", tmp_path / "wear.json", "--entries", "20000", "--fills", "8", "--idle-s", "3",
                       "--latency-fills", "6", "--days", "3")
    results = report["results"]
    assert isinstance(results, dict)
    journal = results["journal"]
    # The shim counts: the journal as it was synced 4+ times a fill, ours 2 (plain inserts 1).
    assert journal["before_issue_19"]["fsyncs_per_fill"] >= 4
    assert journal["ours"]["fsyncs_per_fill"] <= 2.05
    assert journal["plain_sqlite_insert"]["fsyncs_per_fill"] == 1.0
    assert journal["ours"]["bytes_per_fill"] < journal["before_issue_19"]["bytes_per_fill"]
    assert results["agent_fills"]["fills"] >= 6 and results["agent_fills"]["fsyncs_per_fill"] > 0
    assert results["agent_idle"]["wakeups_per_s"] > 0
    sync = results["agent_allowlist_sync"]
    assert sync["snapshot"]["installed"] and sync["delta_1pct"]["installed"]
    days = results["daily_deltas"]
    assert days["lookup"]["runs"] >= 1 and days["rows"][-1]["runs"] == 0  # layered, then compacted
    assert days["lookup"]["lookups"] == 4_000 and days["lookup"]["base_alone"]["p99_us"] > 0
    latency = results["agent_scan_to_relay_20ms_fsync"]
    # Every scan is attributed: the station loop's syncs inside it come from the shim's log.
    assert sum(latency["loop_syncs_per_scan"].values()) == latency["scans"] >= 5
    assert latency["syncs_by_thread"]["station_loop"] >= latency["scans"]
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["fsyncs_per_fill"]["target"] == 2.0 and targets["scan_to_relay_p99_ms_20ms_fsync"]["target"] == 25.0


def test_wear_benchmark_tiny_tier_cycle(tmp_path: Path) -> None:
    """--cycle: every day of one tier cycle installed and measured, the amortised figure is
    their sum (not an estimate), lookups with the most runs the tiers allow."""
    report = run_bench("wear", tmp_path / "cycle.json", "--entries", "20000", "--cycle", "--phases", "days")
    results = report["results"]
    assert isinstance(results, dict)
    days = results["daily_deltas"]
    summary, rows = days["summary"], days["rows"]
    assert summary["cycle_measured"] and summary["days_run"] == summary["cycle_days"] == 49 == len(rows) - 1
    kinds = summary["by_kind"]
    assert (kinds["plain"]["days"], kinds["compose"]["days"], kinds["compaction"]["days"]) == (42, 6, 1)
    assert rows[-1]["compacted"] and not any(r.get("compacted") for r in rows[1:-1])
    total = sum(r["written"] for r in rows[1:]) / sum(r["delta_bytes"] for r in rows[1:])
    assert summary["amortised_x_delta"] == round(total, 2)
    assert days["lookup"]["runs"] == 12  # 6 level-1 + 6 daily runs in front of the base


def test_attendant_benchmark_tiny(tmp_path: Path) -> None:
    import shutil

    from agent.attendant.files import AttendantPageMissing, attendant_dir

    try:
        attendant_dir()
        import playwright.sync_api  # noqa: F401
    except (AttendantPageMissing, ImportError) as exc:
        pytest.skip(str(exc))
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        pytest.skip("Debian's chromium is missing")
    report = run_bench("attendant", tmp_path / "attendant.json", "--scans", "5")
    results = report["results"]
    assert isinstance(results, dict)
    assert results["attendant_page"]["n"] == 5 and results["mqtt_subscriber_baseline"]["n"] == 5
    targets = report["targets"]
    assert isinstance(targets, dict)
    assert targets["decision_to_page_p99_ms"]["target"] == 300.0


def test_fleet_benchmark_tiny(tmp_path: Path) -> None:
    """The national quota across a small fleet: real ledger, PostgreSQL and broker."""
    report = run_bench("fleet", tmp_path / "fleet.json", "--stations", "16", "--vehicles", "300", "--day-s", "25",
                       "--burst", "500", "--sample-mod", "2",
                       "--copy-flow-l-min", "600")
    results = report["results"]
    assert isinstance(results, dict)
    national = results["national_quota"]
    assert national["fills"] > 250 and national["ledger_stored_day"] == national["fills"]
    assert national["outbox_left"] == 0 and national["refused_batches"] == 0
    assert national["propagation"]["pairs"] > 0
    assert national["harness"]["lateness_s"]["max"] >= 0 and "keeps_up" in national["harness"]
    targets = report["targets"]
    assert isinstance(targets, dict)
    for name in ("honest_false_refusals", "abusers_over_bound_with_partitions",
                 "overspend_l_hops_slower_than_p99_links_up"):
        assert targets[name]["met"], (name, targets[name])


def test_update_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("update", tmp_path / "update.json", "--runs", "1", "--release-mb", "1")
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) == {"firmware_windowed", "baseline_stop_and_wait", "release_verify"}
    ours, naive = results["firmware_windowed"], results["baseline_stop_and_wait"]
    assert ours["wire_bytes"] > ours["firmware_bytes"] > 0
    assert ours["seconds_pty"] < naive["seconds_pty"]  # the window is what makes it quick


def test_dart_line_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("dart_line", tmp_path / "dart_line.json", "--stops", "40")
    results = report["results"]
    assert isinstance(results, dict) and set(results) == {"fair_master", "baseline_first_pump_master"}
    assert set(results["fair_master"]) == {"0_dead", "1_dead", "2_dead"}
    targets = report["targets"]
    assert isinstance(targets, dict) and targets["stop_to_wire_p99_ms_2_dead"]["target"] == 250.0


def test_boot_verify_benchmark_tiny(tmp_path: Path) -> None:
    report = run_bench("boot_verify", tmp_path / "boot_verify.json", "--entries", "20000", "--days", "1",
                       "--runs", "1", "--idle-lookups", "100")
    results = report["results"]
    assert isinstance(results, dict) and set(results) == {"plain", "layered"}
    assert results["plain"]["runs_on_base"] == 0 and results["layered"]["runs_on_base"] == 1
    assert results["layered"]["lookups_during_check"] >= 1
