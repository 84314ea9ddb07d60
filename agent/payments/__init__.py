"""Payments on the EDC terminal: the desk's flows, their journal rows, audit and receipts."""
