"""`sectorstorage-index`: serve the storage index."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.launcher import INIT_DATABASE, launch
from services.index.app import IndexApp
from services.index.config import IndexConfig


def main(argv: Sequence[str] | None = None) -> int:
    return launch("index", IndexConfig, IndexApp, argv, (INIT_DATABASE,))


if __name__ == "__main__":
    sys.exit(main())
