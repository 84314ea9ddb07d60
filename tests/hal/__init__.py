"""Tests of the hal layer."""
