"""Log lines for a call to another service of the fleet that failed: they name the dependency
(`index`, `manager`) and its address in the message itself, so a text log, a grep or an alert
says which service to look at, on every retry, not only a gRPC error with a bare IP in it.
Structured fields carry the same: `dependency`, `address`, `code`, `error`."""

from __future__ import annotations

from typing import Any

import grpc

# Codes that mean the service could not be reached or did not answer in time.
UNAVAILABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def describe_failure(dependency: str, address: str, exc: grpc.RpcError, action: str) -> tuple[str, dict[str, Any]]:
    """(message, extra) for `action` (e.g. "storage heartbeat failed; retrying in 10 s") that
    failed calling `dependency` at `address`."""
    code: grpc.StatusCode = exc.code()
    state = "unavailable" if code in UNAVAILABLE_CODES else "answered"
    message = f"{dependency} {address or '(no address)'} {state} ({code.name}): {action}"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return message, {"dependency": dependency, "address": address, "code": code.name, "error": details}
