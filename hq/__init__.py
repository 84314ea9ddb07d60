"""Headquarters: collector, usage ledger, releases, station PKI (never imported by a station)."""
