"""The fleet's one proofs backend: a worker whose `[proofs] backend` differs from the manager's is
refused at registration, before any task could hand it a blob it cannot read (an emulated PC1
output to a filecoin worker) or a proof this manager cannot check. Grpc-free."""

from __future__ import annotations

from services.common.config import ProofsBackend


def reported_backend(value: str) -> ProofsBackend | None:
    """The backend a worker reports; empty is "emulated" (workers older than the field); None for
    a name this manager does not know."""
    try:
        return ProofsBackend(value or ProofsBackend.EMULATED.value)
    except ValueError:
        return None


def mismatch(own: ProofsBackend, reported: str, worker_id: str) -> str | None:
    """Why the worker may not join (one line naming both backends and the key to fix), or None."""
    theirs = reported_backend(reported)
    if theirs is own:
        return None
    named = theirs.value if theirs is not None else f"unknown ({reported!r})"
    return (
        f"worker {worker_id} runs the {named} proofs backend but this manager runs the {own.value} one: "
        "set proofs.backend (SECTORSTORAGE_PROOFS_BACKEND) the same on every worker and manager"
    )
