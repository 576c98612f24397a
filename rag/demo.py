"""The demo knowledge base: the sample documents bundled in the repository (English and Chinese)."""

from __future__ import annotations

from pathlib import Path

from rag.errors import InvalidInput, KBNotFound
from rag.service import RagService

DEMO_KB = "demo"
DEMO_DESCRIPTION = (
    "Sample documents: a product handbook, a support FAQ, an employee FAQ and travel notes (en/zh)"
)
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def ensure_demo_kb(service: RagService, only_if_missing: bool = False) -> tuple[str, bool]:
    """Create KB "demo" from ``samples/`` and index it; returns (name, whether it was created).

    With ``only_if_missing`` an existing demo KB is left as it is; otherwise it is brought up to date
    with the sample folder (a sync: changed samples re-indexed, removed ones deleted).
    """
    if not SAMPLES_DIR.is_dir():
        raise InvalidInput(f"sample documents not found: {SAMPLES_DIR}")
    try:
        service.get_kb(DEMO_KB)
        exists = True
    except KBNotFound:
        exists = False
    if exists and only_if_missing:
        return DEMO_KB, False
    if not exists:
        service.create_kb(DEMO_KB, DEMO_DESCRIPTION)
    service.sync(DEMO_KB, SAMPLES_DIR)
    return DEMO_KB, not exists
