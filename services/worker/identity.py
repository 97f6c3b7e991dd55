"""Who this worker is: a stable id kept in the data dir (survives restarts, so the manager
recognises the worker) and a session id per process (changes on restart, so the manager knows
that calls running on the old process are gone)."""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ID_FILE = "worker-id"


def load_or_create_worker_id(data_dir: Path) -> str:
    path = data_dir / ID_FILE
    if path.exists():
        text = path.read_text().strip()
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ValueError(f"{path} holds {text!r}, not a worker id (a UUID); fix or delete it") from None
    worker_id = str(uuid.uuid4())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(worker_id + "\n")
    tmp.replace(path)
    return worker_id


@dataclass(frozen=True)
class WorkerIdentity:
    worker_id: str
    name: str
    hostname: str = field(default_factory=socket.gethostname)
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.time)
