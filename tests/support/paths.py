"""Where the repository and the shared known-answer vectors are, for tests that read files."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# The known-answer vectors live beside the repository checkout, in ../shared/vectors.
VECTORS_DIR = REPO.parent / "shared" / "vectors"
