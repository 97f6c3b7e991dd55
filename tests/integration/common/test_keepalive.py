"""Keep-alive between real processes: a client that pings on an idle connection as often as the
fleet's `grpc.keepalive_time_s` says is never told GOAWAY ENHANCE_YOUR_CALM "too_many_pings" by
a service using the same setting, because both sides take their options from one module
(services/common/grpc_options.py). The control: a service whose setting differs (gRPC's
stricter policy) does send that GOAWAY, so the check can see it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.fleet import StartService
from tests.support.paths import REPO

# An idle client: one call, IDLE seconds without any, one more call, on one channel.
CLIENT = """
import sys, time
from grpc_health.v1 import health_pb2, health_pb2_grpc
from services.common.client import sync_channel
with sync_channel(sys.argv[1], None) as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    time.sleep(float(sys.argv[2]))
    stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
print("ok")
"""
KEEPALIVE_S = "1"
IDLE_S = 6


def idle_client(address: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SECTORSTORAGE_GRPC_KEEPALIVE_TIME_S": KEEPALIVE_S,
        # gRPC's own log: every keep-alive ping sent, and any GOAWAY received.
        "GRPC_VERBOSITY": "debug",
        "GRPC_TRACE": "http_keepalive",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-c", CLIENT, address, str(IDLE_S)], capture_output=True, text=True, timeout=60, env=env
    )


def test_idle_links_keep_pinging_without_goaway(start_service: StartService) -> None:
    service = start_service("index", env={"SECTORSTORAGE_GRPC_KEEPALIVE_TIME_S": KEEPALIVE_S})
    result = idle_client(service.address)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-3000:]
    pings = re.findall(r"CLIENT\[.*\]: Ping \d+ sent", result.stderr)
    assert len(pings) >= IDLE_S // 2, f"only {len(pings)} keep-alive pings in {IDLE_S} s idle"
    assert "too_many_pings" not in result.stderr and "GOAWAY" not in result.stderr, result.stderr[-3000:]
    assert "too_many_pings" not in service.log() and "GOAWAY" not in service.log()


def test_control_a_mismatched_server_sends_goaway(start_service: StartService) -> None:
    service = start_service("index")  # 30 s: it accepts a ping every 15 s, the client sends one a second
    result = idle_client(service.address)
    assert "too_many_pings" in result.stderr, result.stderr[-3000:]
