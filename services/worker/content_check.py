"""What a fetched sealed file or cache must prove before it is declared: that the sealed replica
and the cache's tree-r-last agree with the commitment in p_aux. The transfer itself verifies the
size and a CRC32C the serving worker computes as it reads its file (checksum.py): that catches
bytes changed in flight, but not a copy that was corrupted at rest on its holder (it is
checksummed as it is read, rot included), and declaring that copy would spread the damage: every
later C1, PoSt or fetch would read it. Only this check catches rot at rest.

The check is a vanilla Window PoSt proof of the one sector over fresh randomness
(`rust_core.check_provable`): it reads the challenged leaves of the sealed file and their
tree-r-last paths up to comm_r_last. A changed part root, upper tree level or p_aux always fails
it; a changed leaf or lower level fails it when a challenge lands on it. It reads a few blocks of
the sector, not the sector, so it costs milliseconds even for 32 GiB.

It needs both halves: the sealed file and a cache with p_aux. A fetch that brings one half while
the other is local is checked; an unsealed file, a cache from before PC2 (no p_aux yet: layers
only, nothing to check them against) and a half whose partner is elsewhere pass with the
transfer's size and checksum checks alone (so rot at rest on their holder is not caught).
"""

from __future__ import annotations

from pathlib import Path

import rust_core
from services.common.vocabulary import prover_id
from services.worker.sectors import FileType, SectorId

P_AUX = "p_aux"


class ContentMismatch(Exception):
    """A fetched copy disagrees with its sector's commitments; the source is not trusted."""


def problem(
    sector: SectorId, sector_size: int, fetched_type: FileType, fetched: Path, partner: Path | None
) -> str | None:
    """Why the fetched sealed file or cache (at `fetched`) must not be declared, or None. The
    `partner` is the local copy of the other half, when there is one."""
    if fetched_type not in (FileType.SEALED, FileType.CACHE) or partner is None:
        return None
    sealed, cache = (fetched, partner) if fetched_type == FileType.SEALED else (partner, fetched)
    if not (cache / P_AUX).is_file():
        return None
    verdicts = rust_core.check_provable(
        sector_size, prover_id(sector.miner), [(sector.number, None, str(sealed), str(cache))]
    )
    return verdicts.get(sector.number)
