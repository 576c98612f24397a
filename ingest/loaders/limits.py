"""Per-file limits on what a file is and what it becomes, and the checks that enforce them.

Each refusal names the limit and the setting that raises it (``ingest.max_text_mb`` ...), so a user can
tell a hostile file from a big one and decide.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ingest.errors import CorruptFile, OutOfMemory, TimedOut, TooLarge
from ingest.models import Section

__all__ = ["DEFAULT_LIMITS", "LoadLimits", "OutOfMemory", "TextBudget", "TimedOut", "TooLarge", "active_limits",
           "check_text_size", "check_zip_container", "out_of_memory", "seconds_left", "timed_out", "too_deep",
           "using_limits"]

MB = 1 << 20


@dataclass(frozen=True, slots=True)
class LoadLimits:
    max_pages: int = 2000  # PDF pages, TIFF frames
    max_ocr_pages: int = 300  # text-less pages OCR'd per file (OCR is ~1-3 s a page here)
    timeout_s: float = 300.0  # budget for one file's parse (converters, OCR, PDF)
    max_uncompressed_bytes: int = 1 << 30  # zip containers: total after inflating
    max_compression_ratio: float = 200.0  # zip members over 1 MiB inflating more than this are bombs
    max_image_pixels: int = 120_000_000  # about 11000 x 11000; bigger images are refused, not decoded
    # What a file becomes: a 400-byte YAML alias bomb expands to gigabytes of text; a 50 MB file is far
    # more text than any document a person wrote (a 2,000-page book is ~5 MB).
    max_text_bytes: int = 20 * MB  # extracted text of one document, UTF-8
    max_depth: int = 100  # nesting of JSON / YAML / XML values (real data files stay under ~20)
    max_archive_members: int = 10_000  # members of a zip container (docx, xlsx, odt, epub ...)
    # The parser worker's data segment (RLIMIT_DATA): a parse past it fails this file, not the process.
    # Parsing a file takes ~400 MB with unstructured and spaCy loaded; LibreOffice and Tesseract inherit it.
    max_parser_memory_bytes: int = 2048 * MB


DEFAULT_LIMITS = LoadLimits()
_active: ContextVar[LoadLimits] = ContextVar("load_limits", default=DEFAULT_LIMITS)
_deadline: ContextVar[float | None] = ContextVar("load_deadline", default=None)


def active_limits() -> LoadLimits:
    return _active.get()


@contextmanager
def using_limits(limits: LoadLimits) -> Iterator[None]:
    """Loaders keep their (bytes, Path) signature; the limits and the file's deadline travel in context."""
    limit_token = _active.set(limits)
    deadline_token = _deadline.set(time.monotonic() + limits.timeout_s)
    try:
        yield
    finally:
        _deadline.reset(deadline_token)
        _active.reset(limit_token)


def seconds_left() -> float:
    """Time left in this file's budget; raises TimedOut once it is spent."""
    deadline = _deadline.get()
    if deadline is None:
        return active_limits().timeout_s
    left = deadline - time.monotonic()
    if left <= 0:
        raise timed_out()
    return left


def timed_out() -> TimedOut:
    return TimedOut(f"took longer than {active_limits().timeout_s:g} s (the per-file time budget)")


def check_zip_container(data: bytes, kind: str) -> None:
    """Refuse zip bombs by their declared member count and sizes before any parser inflates them.

    A member whose headers understate its size cannot fool the parsers: Python's zipfile stops at the
    declared size and fails the CRC check, and salvage counts what it really inflates.
    """
    limits = active_limits()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFile(f"not a valid {kind} file (its zip container is damaged)") from exc
    if len(members) > limits.max_archive_members:
        raise TooLarge(f"{kind} zip container has {len(members):,} members, over the "
                       f"{limits.max_archive_members:,}-member limit (ingest.max_archive_members)")
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        raise TooLarge(
            f"{kind} inflates to {total / 1e6:.0f} MB, over the {limits.max_uncompressed_bytes / 1e6:.0f} MB limit "
            "(decompression bomb?; ingest.max_uncompressed_mb)"
        )
    for member in members:
        if member.file_size > 1 << 20 and member.file_size > member.compress_size * limits.max_compression_ratio:
            ratio = member.file_size / max(member.compress_size, 1)
            raise TooLarge(f"{kind} member '{member.filename}' inflates {ratio:.0f}x, over the "
                           f"{limits.max_compression_ratio:g}x limit (decompression bomb; ingest.max_compression_ratio)")


def out_of_memory(limits: LoadLimits | None = None) -> OutOfMemory:
    limit = (limits or active_limits()).max_parser_memory_bytes
    return OutOfMemory(f"parsing needed more than the {limit / MB:g} MB memory limit of the parser process "
                       "(ingest.max_parser_memory_mb)")


def too_deep(kind: str) -> TooLarge:
    return TooLarge(f"{kind} nests deeper than {active_limits().max_depth} levels, the nesting limit (ingest.max_depth)")


def text_too_large(size: int, what: str = "extracted text", partial: bool = False) -> TooLarge:
    """``partial``: counting stopped at the limit, so ``size`` is a lower bound."""
    limit = active_limits().max_text_bytes
    return TooLarge(f"{what} is {'at least ' if partial else ''}{size / MB:.3g} MB, over the "
                    f"{limit / MB:.4g} MB limit on text per document (ingest.max_text_mb)")


def check_text_size(sections: Iterable[Section]) -> None:
    size = 0
    for section in sections:
        size += len(section.text.encode("utf-8", "replace"))
    if size > active_limits().max_text_bytes:
        raise text_too_large(size)


class TextBudget:
    """Counts the characters a loader produces and fails the file as soon as they pass ``max_text_bytes``,
    so an expanding format (aliases, entities, inflation) stops at the limit, not at the end of the expansion."""

    def __init__(self, what: str = "extracted text") -> None:
        self.limit = active_limits().max_text_bytes
        self.used = 0
        self.what = what

    def take(self, text: str) -> str:
        self.used += len(text) + 1
        if self.used > self.limit:
            raise text_too_large(self.used, self.what, partial=True)
        return text
