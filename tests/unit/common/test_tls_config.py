"""The `[tls]` section's rules (pairs of keys that go together) and the duration checks the
services use on request fields (services/common/wellknown.py)."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.config import ConfigError, ServiceConfig, TlsConfig, load_config, section_from_env
from services.common.wellknown import duration_problem, duration_seconds


def test_tls_is_off_by_default() -> None:
    assert load_config(ServiceConfig, env={}).tls == TlsConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SECTORSTORAGE_TLS_CERT_FILE": "c.pem"}, "cert_file and key_file go together"),
        ({"SECTORSTORAGE_TLS_CLIENT_CA_FILE": "ca.pem"}, "needs cert_file"),
        (
            {"SECTORSTORAGE_TLS_CA_FILE": "ca.pem", "SECTORSTORAGE_TLS_CLIENT_KEY_FILE": "k"},
            "client_cert_file and client_key_file",
        ),
        ({"SECTORSTORAGE_TLS_CLIENT_CERT_FILE": "c", "SECTORSTORAGE_TLS_CLIENT_KEY_FILE": "k"}, "needs ca_file"),
    ],
)
def test_tls_key_pairs(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ServiceConfig, env=env)


def test_tls_section_from_environment_alone() -> None:
    env = {"SECTORSTORAGE_TLS_CA_FILE": "/etc/fleet/ca.pem", "SECTORSTORAGE_AUTH_SECRET": "ignored"}
    assert section_from_env(TlsConfig, "tls", env) == TlsConfig(ca_file="/etc/fleet/ca.pem")
    with pytest.raises(ConfigError, match="SECTORSTORAGE_TLS_"):
        section_from_env(TlsConfig, "tls", {"SECTORSTORAGE_TLS_CLIENT_CERT_FILE": "c"})


@pytest.mark.parametrize(
    "d",
    [
        Duration(seconds=1, nanos=-1),
        Duration(seconds=-1, nanos=1),
        Duration(nanos=10**9),
        Duration(seconds=2**63 - 1),
        Duration(seconds=-(2**63)),
    ],
)
def test_invalid_durations(d: Duration) -> None:
    assert duration_problem(d)


def test_valid_durations() -> None:
    for d, seconds in (
        (Duration(), 0.0),
        (Duration(seconds=3, nanos=500_000_000), 3.5),
        (Duration(seconds=-2, nanos=-500_000_000), -2.5),
    ):
        assert duration_problem(d) is None and duration_seconds(d) == seconds
