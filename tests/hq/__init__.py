"""Tests of the hq layer."""
