"""Per-file limits (pages, time, decompressed size, image pixels) and the checks that enforce them."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ingest.errors import CorruptFile, FileRejected


class TooLarge(FileRejected):
    """Over a page, size or pixel limit, or a decompression bomb."""


class TimedOut(FileRejected):
    pass


@dataclass(frozen=True, slots=True)
class LoadLimits:
    max_pages: int = 2000  # PDF pages, TIFF frames
    max_ocr_pages: int = 300  # text-less pages OCR'd per file (OCR is ~1-3 s a page here)
    timeout_s: float = 300.0  # budget for one file's parse (converters, OCR, PDF)
    max_uncompressed_bytes: int = 1 << 30  # zip containers: total after inflating
    max_compression_ratio: float = 200.0  # zip members over 1 MiB inflating more than this are bombs
    max_image_pixels: int = 120_000_000  # about 11000 x 11000; bigger images are refused, not decoded


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
    """Refuse zip bombs by their declared sizes before any parser inflates them."""
    limits = active_limits()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptFile(f"not a valid {kind} file (its zip container is damaged)") from exc
    total = sum(m.file_size for m in members)
    if total > limits.max_uncompressed_bytes:
        raise TooLarge(
            f"{kind} inflates to {total / 1e6:.0f} MB, over the {limits.max_uncompressed_bytes / 1e6:.0f} MB limit "
            "(decompression bomb?)"
        )
    for member in members:
        if member.file_size > 1 << 20 and member.file_size > member.compress_size * limits.max_compression_ratio:
            ratio = member.file_size / max(member.compress_size, 1)
            raise TooLarge(f"{kind} member '{member.filename}' inflates {ratio:.0f}x (decompression bomb)")
