"""`sectorstorage-manager`: serve the sealing API and run the scheduler."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.launcher import INIT_DATABASE, Flag, launch
from services.manager.app import ManagerApp
from services.manager.config import ManagerConfig

FLAGS = (Flag("--index", "manager.index", "HOST:PORT of the index service", metavar="HOST:PORT"), INIT_DATABASE)


def main(argv: Sequence[str] | None = None) -> int:
    return launch("manager", ManagerConfig, ManagerApp, argv, FLAGS)


if __name__ == "__main__":
    sys.exit(main())
