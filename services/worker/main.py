"""`sectorstorage-worker`: run sealing tasks and serve sector files."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.launcher import Flag, launch
from services.worker.app import WorkerApp
from services.worker.config import WorkerConfig

FLAGS = (
    Flag(
        "--manager",
        "worker.manager",
        "HOST:PORT of the manager to register with (several, comma-separated: managers sharing a database)",
        metavar="HOST:PORT[,...]",
    ),
    Flag("--index", "worker.index", "HOST:PORT of the index service", metavar="HOST:PORT"),
    Flag(
        "--advertise",
        "worker.advertise",
        "HOST:PORT peers use to reach this worker (default: the bound address)",
        metavar="HOST:PORT",
    ),
    Flag("--name", "worker.name", "display name (default: host name)", metavar="NAME"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return launch("worker", WorkerConfig, WorkerApp, argv, FLAGS)


if __name__ == "__main__":
    sys.exit(main())
