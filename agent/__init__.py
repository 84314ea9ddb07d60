"""spbu-edge agent: decides eligibility, runs pump sessions, journals and syncs."""

__version__ = "0.1.0"
