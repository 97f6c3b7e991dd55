"""One proofs backend per fleet: the manager refuses a worker that reports another one at
registration (FAILED_PRECONDITION naming both and the key to fix), over real gRPC."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from services.common.config import ProofsBackend
from services.common.proto.sectorstorage.v1 import manager_pb2
from services.manager.proofs_backend import mismatch
from tests.support.fake_worker import FakeWorker, InProcessManager


def test_mismatch_rules() -> None:
    assert mismatch(ProofsBackend.EMULATED, "emulated", "w") is None
    # Workers older than the field send nothing: they run the emulation.
    assert mismatch(ProofsBackend.EMULATED, "", "w") is None
    assert mismatch(ProofsBackend.FILECOIN, "filecoin", "w") is None
    assert mismatch(ProofsBackend.EMULATED, "filecoin", "w1") == (
        "worker w1 runs the filecoin proofs backend but this manager runs the emulated one: "
        "set proofs.backend (SECTORSTORAGE_PROOFS_BACKEND) the same on every worker and manager"
    )
    message = mismatch(ProofsBackend.FILECOIN, "", "w2")
    assert message is not None and "worker w2 runs the emulated proofs backend" in message
    message = mismatch(ProofsBackend.EMULATED, "groth", "w3")
    assert message is not None and "unknown ('groth')" in message


def test_manager_refuses_a_worker_of_another_backend(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()  # registers without the field
        try:
            stub = worker.stub
            assert stub is not None
            for backend in ("filecoin", "Emulated", "groth16"):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.RegisterWorker(
                        manager_pb2.RegisterWorkerRequest(
                            info=worker.info(),
                            address=worker.address,
                            session_id="other-session",
                            proofs_backend=backend,
                        ),
                        timeout=5,
                    )
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, backend
                assert "proofs backend but this manager runs the emulated one" in (err.value.details() or "")
            # Refused, the worker's earlier registration stands; the same backend is accepted.
            reply = await stub.RegisterWorker(
                manager_pb2.RegisterWorkerRequest(
                    info=worker.info(), address=worker.address, session_id=worker.session_id, proofs_backend="emulated"
                ),
                timeout=5,
            )
            assert reply.manager_session_id
        finally:
            await worker.stop()
            await manager.stop()

    asyncio.run(asyncio.wait_for(test(), 60))
