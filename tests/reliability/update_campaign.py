"""Crash campaign over the update path: SIGKILL at every step of install and switch.

    python tests/reliability/update_campaign.py --json OUT     (the test runs the same)

A station runs release 0.1.0 (a real venv built from this project's wheel). Release 0.2.0
carries a config migration and a journal migration. For each named killpoint of staging
(agent/updates/store.STAGE_POINTS) and of the switch and rollback (agent/updates/switch.
SWITCH_POINTS), a fresh copy of the station runs the update in a process killed at that
point; then `release_switch boot` runs as systemd would before the next start. After
every kill the station must be on one complete release, never a mix:

  - `current` names a release with its COMPLETE marker, whose venv imports an agent of
    that very version;
  - the config migration and the journal migration are applied exactly when `current` is
    0.2.0 (undone on the way back);
  - no half-staged directory is left behind; and the update still completes afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.allowlist.chunks import ChunkStore  # noqa: E402
from agent.updates import manifest as rm  # noqa: E402
from agent.updates.store import STAGE_POINTS, ReleaseStore, is_complete  # noqa: E402
from agent.updates.switch import SWITCH_POINTS, Switch  # noqa: E402
from hq import software_release as sr  # noqa: E402
from tests.release_fixtures import BASE_SITE, build_base_wheel, wheel_variant  # noqa: E402

MIGRATIONS = {"config": [{"op": "set", "key": "update.campaign_marker", "value": "0.2.0"}],
              "journal": {"up": ["CREATE TABLE campaign_marker (x INTEGER)"],
                          "down": ["DROP TABLE campaign_marker"]}}


def _paths(station: Path) -> tuple[Path, Path, Path, Path]:
    return station / "releases", station / "update", station / "agent.toml", station / "journal.sqlite"


def _manifest(release_dir: Path) -> rm.ReleaseManifest:
    raw = (release_dir / "manifest.json").read_bytes()
    return rm.parse(json.loads(raw)["signed"], raw)


def step(station: Path, release_dir: Path, action: str) -> None:
    """One action as the agent or systemd does it (run in a child the campaign kills)."""
    releases, state, config, journal = _paths(station)
    switch = Switch(releases, state, config, journal)
    if action == "stage":
        chunks = ChunkStore(state / "chunks")
        for digest, data in sr.chunks(release_dir).items():
            chunks.put(digest, len(data), data)
        ReleaseStore(releases, chunks, BASE_SITE).stage(_manifest(release_dir))
    elif action == "request":
        m = _manifest(release_dir)
        switch.request_switch(m.version, list(m.config_migration), list(m.journal_up),
                              None if m.journal_down is None else list(m.journal_down))
    elif action == "boot":
        switch.boot()
    elif action == "fail":
        switch.request_rollback("campaign: the candidate failed its health window")
    elif action == "commit":
        trial = switch.load().get("trial") or {}
        if trial.get("version") == switch.current():
            switch.commit(str(trial["version"]))


def run_step(station: Path, release_dir: Path, action: str, killpoint: str = "") -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SPBU_KILLPOINT", None)
    if killpoint:
        env["SPBU_KILLPOINT"] = killpoint
    result = subprocess.run([sys.executable, __file__, "--step", action, "--station", str(station),
                             "--release", str(release_dir)], env=env, capture_output=True, timeout=300)
    if result.returncode not in (0, -9):
        raise RuntimeError(f"{action} failed: {result.stderr.decode()[-800:]}")
    return result.returncode


def invariants(station: Path) -> dict[str, Any]:
    """The station is on one complete release, with exactly its migrations applied."""
    releases, _, config, journal = _paths(station)
    current = os.readlink(releases / "current")
    problems = []
    if not is_complete(releases / current):
        problems.append(f"current {current} is not a complete release")
    out = subprocess.run([str(releases / current / "venv" / "bin" / "python"), "-c",
                          "import agent; print(agent.__version__)"], capture_output=True, text=True,
                         timeout=60, cwd=station)
    if out.stdout.strip() != current:
        problems.append(f"current {current} runs agent {out.stdout.strip() or out.stderr[-200:]!r}: a mix")
    marker = tomllib.loads(config.read_text()).get("update", {}).get("campaign_marker")
    with sqlite3.connect(journal) as db:
        table = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'campaign_marker'").fetchone() is not None
    if (marker == "0.2.0") != (current == "0.2.0") or table != (current == "0.2.0"):
        problems.append(f"current {current} with config marker {marker!r} and journal table {table}")
    debris = [p.name for p in releases.iterdir() if p.is_dir() and not p.is_symlink() and not is_complete(p)]
    if debris:
        problems.append(f"half-staged directories left: {debris}")
    return {"current": current, "problems": problems}


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """A station on 0.1.0 (template) and the two releases' directories."""
    wheels = work / "wheels"
    wheels.mkdir()
    base = build_base_wheel(wheels)
    releases = {}
    for version, seq in (("0.1.0", 1), ("0.2.0", 2)):
        wheel = base if version == "0.1.0" else wheel_variant(base, wheels, version)
        out = work / f"release-{version}"
        sr.build(out, version, seq, [wheel], migrations=MIGRATIONS if version == "0.2.0" else None)
        out.joinpath("manifest.json").write_bytes(json.dumps({"signed": json.loads(
            (out / "body.json").read_text()), "signatures": []}).encode())
        releases[version] = out
    template = work / "station"
    template.mkdir()
    _, _, config, journal = _paths(template)
    config.write_text('[station]\nid = "34.401.01"\n\n[update]\nhealth_window_s = 5\n')
    sqlite3.connect(journal).close()
    run_step(template, releases["0.1.0"], "stage")
    (template / "releases" / "current").symlink_to("0.1.0")
    return template, releases["0.1.0"], releases["0.2.0"]


def fresh(template: Path, work: Path, name: str) -> Path:
    station = work / name
    shutil.copytree(template, station, symlinks=True)
    return station


def campaign(work: Path, points: list[str] | None = None) -> dict[str, Any]:
    template, _, new = prepare(work)
    staged = fresh(template, work, "staged")
    run_step(staged, new, "stage")
    results: dict[str, Any] = {}
    for point in points or [*STAGE_POINTS, *SWITCH_POINTS]:
        started = time.monotonic()
        station = fresh(staged if point not in STAGE_POINTS else template, work, f"kill-{point}")
        plan = ["stage"] if point in STAGE_POINTS else ["request", "boot", "fail", "boot"]
        killed = False
        for action in plan:
            if run_step(station, new, action, point) == -9:
                killed = True
                break
        run_step(station, new, "boot")  # what systemd does before the next start
        after_kill = invariants(station)
        # ... and the update still goes through afterwards (staging again if it must).
        # A candidate on trial passes its health window; otherwise the update runs again.
        for action in ("commit", "stage", "request", "boot", "commit"):
            run_step(station, new, action)
        after = invariants(station)
        if after["current"] != "0.2.0":
            after["problems"].append(f"the update did not complete after the kill: on {after['current']}")
        results[point] = {"killed": killed, "after_kill": after_kill, "then": after,
                          "seconds": round(time.monotonic() - started, 2)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", choices=("stage", "request", "boot", "fail", "commit"))
    parser.add_argument("--station", type=Path)
    parser.add_argument("--release", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.step:
        step(args.station, args.release, args.step)
        return 0
    with tempfile.TemporaryDirectory(prefix="spbu-update-campaign-") as tmp:
        results = campaign(Path(tmp))
    bad = {p: r for p, r in results.items()
           if not r["killed"] or r["after_kill"]["problems"] or r["then"]["problems"]}
    report = {"points": len(results), "failed": bad, "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps({"points": len(results), "failed": list(bad)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
