"""Fixture: importing this file fails."""

raise RuntimeError("broken on purpose\nsecond line")
