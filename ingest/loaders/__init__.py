"""Turn one file into a ParsedDocument, or raise FileRejected with a readable reason."""

from __future__ import annotations

import logging
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile, FileRejected, UnsupportedFormat
from ingest.loaders.formats import ISOLATED_SUFFIXES, LOADERS, Loader
from ingest.loaders.isolation import isolated_load
from ingest.loaders.limits import DEFAULT_LIMITS, LoadLimits, TimedOut, TooLarge, using_limits
from ingest.loaders.salvage import DATA_SUFFIXES, ZIP_SUFFIXES, recover_data_file, recover_zip, sniff_suffix
from ingest.models import ParsedDocument, Section
from ingest.offline import configure_unstructured

logger = logging.getLogger(__name__)

__all__ = ["LOADERS", "LoadLimits", "Loader", "load_document", "is_supported", "format_of", "warm_up_parsers"]


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def format_of(path: Path) -> str:
    entry = LOADERS.get(path.suffix.lower())
    return entry[0] if entry else path.suffix.lower().lstrip(".") or "unknown"


def load_document(
    path: Path, source: str, data: bytes | None = None, limits: LoadLimits = DEFAULT_LIMITS
) -> ParsedDocument:
    """``limits``: page, time, inflated-size and pixel limits; PDFs and images are parsed in a worker
    process that is killed when it overruns ``limits.timeout_s``.

    A file whose bytes say it is another format than its name is read as what it is; one that its
    loader calls corrupt gets a second, salvaging try (see salvage.py). Both leave a note on the document.
    """
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise UnsupportedFormat(f"unsupported file type '{path.suffix or path.name}'")
    configure_unstructured()
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise EmptyFile("file is empty")
    notes: list[str] = []
    actual = sniff_suffix(data, suffix)
    if actual is not None and actual in LOADERS and LOADERS[actual][1] is not LOADERS[suffix][1]:
        notes.append(f"content is {LOADERS[actual][0].upper()}, though the name says {suffix}")
        suffix = actual
    kind = LOADERS[suffix][0]
    try:
        sections = _parse(suffix, data, path, limits)
    except CorruptFile as exc:
        recovered = _recover(suffix, data, path, limits)
        if recovered is None:
            raise
        sections, how = recovered
        notes.append(f"{exc.reason}; {how}")
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise EmptyFile("no text found in file")
    title = next((s.heading.split(" > ")[0] for s in sections if s.heading), None)
    return ParsedDocument(source=source, sections=sections, format=kind, title=title, path=path, notes=notes)


def _parse(suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
    kind, loader = LOADERS[suffix]
    try:
        if suffix in ISOLATED_SUFFIXES:
            return isolated_load(suffix, data, path, limits)
        with using_limits(limits):
            return loader(data, path)
    except FileRejected:
        raise
    except Exception as exc:  # a parser's own error: name it, keep the run going
        raise CorruptFile(f"could not parse {kind.upper()}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _recover(suffix: str, data: bytes, path: Path, limits: LoadLimits) -> tuple[list[Section], str] | None:
    try:
        with using_limits(limits):
            if suffix in ZIP_SUFFIXES:
                return recover_zip(data, path, LOADERS[suffix][1])
            if suffix in DATA_SUFFIXES:
                return recover_data_file(data, path)
    except (TooLarge, TimedOut):
        raise  # a bomb or an overrun found while salvaging is the truer reason
    except FileRejected:
        return None
    except Exception:  # the salvage is a second chance; its own failure leaves the first error standing
        logger.debug("salvaging %s failed", path.name, exc_info=True)
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


def warm_up_parsers() -> None:
    """Import unstructured's text partitioners and load its spaCy model now, not on the first file."""
    load_document(Path("warm-up.md"), "warm-up.md", b"# Warm up\n\nThis paragraph loads the parsers.\n")
