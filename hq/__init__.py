"""Headquarters' production code: transaction collector, national usage ledger, allow-list
and software releases, station PKI.

Never imported by the station runtime (import-linter contracts in pyproject.toml)."""
