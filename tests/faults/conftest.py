"""Fixtures of the fault tests: the shared Fleet (tests/support/fleet.py)."""

from tests.support.fleet import fleet  # noqa: F401
