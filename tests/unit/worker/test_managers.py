"""The worker's manager addresses: parsed from worker.manager, and the failover walk."""

from __future__ import annotations

import pytest

from services.worker.managers import ManagerAddresses


def test_parse_keeps_order_drops_blanks_and_repeats() -> None:
    managers = ManagerAddresses.parse(" m1:9090, ,m2:9090,m1:9090 ")
    assert managers.addresses == ["m1:9090", "m2:9090"] and managers.current == "m1:9090"
    assert str(managers) == "m1:9090,m2:9090"
    with pytest.raises(ValueError, match="no manager address"):
        ManagerAddresses.parse(" , ")


def test_a_failure_moves_on_once_even_when_reported_twice() -> None:
    managers = ManagerAddresses.parse("m1:1,m2:1,m3:1")
    assert managers.failed("m1:1") == "m2:1"
    # The return sender reports the same failed manager after the link already moved on: no skip.
    assert managers.failed("m1:1") == "m2:1"
    assert managers.failed("m2:1") == "m3:1"
    assert managers.failed("m3:1") == "m1:1"  # round and round until one leads


def test_one_manager_stays_itself() -> None:
    managers = ManagerAddresses.parse("m1:1")
    assert managers.failed("m1:1") == "m1:1"
