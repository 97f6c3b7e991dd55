"""Fixtures of the fault tests: the shared Fleet (tests/integration/fleet.py)."""

from tests.integration.fleet import fleet  # noqa: F401
