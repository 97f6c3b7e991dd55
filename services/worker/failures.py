"""The one error a call to another service (the index, a peer worker) becomes at its client's
edge (index_client.py, peers.py translate gRPC errors into it), so that the domain modules
catch domain errors only and never import grpc."""

from __future__ import annotations

from typing import Any

from services.common import errors


class CallFailed(errors.Unavailable):
    """A call to another service failed: it answered with an error status or could not be
    reached. To this worker's own caller it is UNAVAILABLE (the request may work later or
    elsewhere), with the other service's status in the message. `answer` is the domain error
    that status means (errors.NotFound for NOT_FOUND, ...), for the code that acts on it;
    `unreachable` says the service did not answer at all (UNAVAILABLE, DEADLINE_EXCEEDED)."""

    def __init__(
        self, dependency: str, address: str, status: str, details: str, answer: errors.DomainError, unreachable: bool
    ) -> None:
        super().__init__(f"a dependency failed: {status}: {details}")
        self.dependency = dependency
        self.address = address
        self.status = status
        self.details = details
        self.answer = answer
        self.unreachable = unreachable

    def answered(self, kind: type[errors.DomainError]) -> bool:
        """Whether the other service answered with this kind of error (e.g. errors.NotFound)."""
        return isinstance(self.answer, kind)

    def describe(self, action: str) -> tuple[str, dict[str, Any]]:
        """(message, extra) of a log line for `action` that failed on this call: it names the
        dependency and its address, as services/common/dependency.describe_failure does."""
        state = "unavailable" if self.unreachable else "answered"
        message = f"{self.dependency} {self.address or '(no address)'} {state} ({self.status}): {action}"
        return message, {
            "dependency": self.dependency,
            "address": self.address,
            "code": self.status,
            "error": self.details,
        }
