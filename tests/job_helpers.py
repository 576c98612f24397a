"""Shared by the job tests: many small files, settings that commit after every file, and a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Stage each file on its own and commit every 0.2 s: an ingest is then a sequence of small commits, so a
# kill or a cancel lands between commits and the test can count what was committed. The chat model is an
# (unused) OpenAI-compatible client: the server's warm-up then loads no LLM, which would take the CPU.
FAST_COMMITS = {"RAG_INGEST__COMMIT_SECONDS": "0.2", "RAG_INGEST__EMBED_BATCH_CHUNKS": "1",
                "RAG_LLM__BACKEND": "openai"}

_WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "isthmus", "juniper"]


def note_files(topic: str, count: int, lines: int = 6) -> list[tuple[str, bytes]]:
    """``count`` distinct small text files, ``topic-000.txt`` …"""
    return [(f"{topic}-{i:03d}.txt",
             "\n".join(f"{topic} note {i} line {j}: the {_WORDS[(i + j) % 10]} reading was {i * 13 + j} units."
                       for j in range(lines)).encode())
            for i in range(count)]


def wait_until(check: Callable[[], T | None | bool], what: str, timeout: float = 60, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value  # type: ignore[return-value]
        time.sleep(every)
    raise AssertionError(f"{what} (within {timeout:.0f}s)")
