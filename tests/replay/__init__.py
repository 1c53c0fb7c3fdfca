"""Recorded watch streams of real pod lifecycles, replayed through the core."""
