"""Headquarters: transaction collector, national usage ledger, releases, station PKI."""
