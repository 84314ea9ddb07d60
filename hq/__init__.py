"""Headquarters' production code: transaction collector, allow-list releases, station PKI.

Never imported by the station runtime (import-linter contracts in pyproject.toml)."""
