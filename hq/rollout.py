"""Staged rollout of a software release across the fleet.

Cohorts are a stable hash of the station id (agent/updates/manifest.cohort_bucket): 1 %,
then 10 %, 50 %, 100 %. Each station reports on spbu/v1/<station>/update (retained);
headquarters advances to the next cohort only when enough of the current one has
reported and its failures (rolled back, refused, staging failed) stay under the
threshold. Advancing or halting is a re-signed manifest (hq/software_release.reroll):
a halt stops every station that has not switched yet; stations already on the release
stay there (a bad release is fixed forward by a newer one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent import topics
from agent.updates import manifest as rm

STEPS = (1, 10, 50, 100)


class RolloutHalted(RuntimeError):
    pass


@dataclass
class RolloutTracker:
    version: str
    percent: int
    threshold: float = 0.05  # failures / reported in the cohort above which we stop
    min_reported: float = 0.8  # share of the cohort that must have reported before advancing
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    def observe(self, topic: str, payload: bytes) -> None:
        station = topics.station_of(topic)
        if station is None or not topic.endswith("/update"):
            return
        try:
            report = json.loads(payload)
        except ValueError:
            return
        if isinstance(report, dict):
            self.reports[station] = report

    def outcome(self, station: str) -> str:
        """installed | failed | pending, for this release."""
        report = self.reports.get(station)
        if report is None:
            return "pending"
        last = report.get("last") or {}
        if report.get("running") == self.version and report.get("state") in ("installed", "idle"):
            return "installed"
        if last.get("version") == self.version and last.get("event") in ("rolled_back", "refused",
                                                                          "rollback_refused"):
            return "failed"
        if report.get("version") == self.version and report.get("state") == "rejected":
            return "failed"
        return "pending"

    def status(self, fleet: list[str]) -> dict[str, Any]:
        cohort = [s for s in fleet if rm.cohort_bucket(s) < self.percent]
        counts = {"installed": 0, "failed": 0, "pending": 0}
        for station in cohort:
            counts[self.outcome(station)] += 1
        return {"version": self.version, "percent": self.percent, "cohort": len(cohort), **counts,
                "failed_stations": sorted(s for s in cohort if self.outcome(s) == "failed")}

    def next_percent(self, fleet: list[str]) -> int | None:
        """The next cohort, None while waiting; RolloutHalted when failures are too many."""
        status = self.status(fleet)
        reported = status["installed"] + status["failed"]
        if reported and status["failed"] / reported > self.threshold:
            raise RolloutHalted(f"{status['failed']} of {reported} stations failed {self.version}: "
                                f"{', '.join(status['failed_stations'][:10])}")
        if status["cohort"] and reported < self.min_reported * status["cohort"]:
            return None
        later = [p for p in STEPS if p > self.percent]
        return later[0] if later else None
