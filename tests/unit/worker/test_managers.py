"""The worker's manager addresses: parsed from worker.manager, and the failover walk."""

from __future__ import annotations

import pytest

from services.common.backoff import Backoff
from services.worker.managers import FailoverPacer, ManagerAddresses


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


def test_the_pacer_tries_every_manager_at_once_then_backs_off_when_all_failed() -> None:
    managers = ManagerAddresses.parse("m1:1,m2:1,m3:1")
    pacer = FailoverPacer(managers, Backoff(initial=1.0, maximum=8.0))
    assert pacer.failed("m1:1") == ("m2:1", 0.0)
    assert pacer.failed("m2:1") == ("m3:1", 0.0)
    following, delay = pacer.failed("m3:1")  # a whole round failed: no manager leads yet
    assert following == "m1:1" and 0.5 <= delay <= 1.0
    assert pacer.failed("m1:1") == ("m2:1", 0.0)  # the next round starts at once again
    assert pacer.failed("m2:1") == ("m3:1", 0.0)
    _, delay = pacer.failed("m3:1")
    assert 1.0 <= delay <= 2.0  # and the back-off grows round after round
    pacer.succeeded()
    assert pacer.failed("m1:1") == ("m2:1", 0.0)


def test_the_pacer_backs_off_at_once_with_one_manager() -> None:
    pacer = FailoverPacer(ManagerAddresses.parse("m1:1"), Backoff(initial=1.0, maximum=8.0))
    following, delay = pacer.failed("m1:1")
    assert following == "m1:1" and delay > 0
