"""Fixtures of the worker's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.worker import ManagerEndpoint


@pytest.fixture
def manager() -> Iterator[ManagerEndpoint]:
    """A stand-in manager the workers return their results to (the tests await them there)."""
    endpoint = ManagerEndpoint()
    yield endpoint
    endpoint.stop()
