"""Sets up rust_filecoin from `[proofs]` (docs/filecoin-backend.md) for the services that call it
(the worker's tasks, the manager's verifier). Imported only once `backend = "filecoin"` chose
it: the module needs the optional extension (`make develop-filecoin`)."""

from __future__ import annotations

import rust_filecoin
from services.common.config import ProofsConfig


def configure(proofs: ProofsConfig) -> str:
    """Points the library at the configured parameter and parent caches (empty: the library's
    defaults) and the largest sector size whose parameters may be generated; the parameter cache
    in use. The library reads its settings once per process: a second call with another cache is
    a ValueError, which start-up reports."""
    return rust_filecoin.configure(
        proofs.parameter_cache or None, proofs.parent_cache or None, proofs.generate_parameters_up_to
    )
