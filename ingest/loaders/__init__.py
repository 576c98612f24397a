"""Turn one file into a ParsedDocument, or raise FileRejected with a readable reason."""

from __future__ import annotations

import logging
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile, FileRejected, UnsupportedFormat
from ingest.loaders.formats import LOADERS, Loader
from ingest.loaders.isolation import in_worker, isolated_parse
from ingest.loaders.limits import (
    DEFAULT_LIMITS,
    LoadLimits,
    TimedOut,
    TooLarge,
    check_text_size,
    out_of_memory,
    using_limits,
)
from ingest.loaders.salvage import DATA_SUFFIXES, ZIP_SUFFIXES, recover_data_file, recover_zip, sniff_suffix
from ingest.models import ParsedDocument, Section
from ingest.offline import configure_unstructured

logger = logging.getLogger(__name__)

__all__ = ["LOADERS", "LoadLimits", "Loader", "load_document", "parse_document", "is_supported", "format_of",
           "warm_up_parsers"]


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def format_of(path: Path) -> str:
    entry = LOADERS.get(path.suffix.lower())
    return entry[0] if entry else path.suffix.lower().lstrip(".") or "unknown"


def load_document(
    path: Path, source: str, data: bytes | None = None, limits: LoadLimits = DEFAULT_LIMITS
) -> ParsedDocument:
    """``limits``: what a file may be and become (pages, time, inflated size, pixels, text, nesting,
    memory). The file is parsed in the worker process (see isolation.py), which is killed when it
    overruns ``limits.timeout_s`` and whose memory is capped at ``limits.max_parser_memory_bytes``;
    the text that comes back is checked against ``limits.max_text_bytes`` here too.
    """
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise UnsupportedFormat(f"unsupported file type '{path.suffix or path.name}'")
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise EmptyFile("file is empty")
    if in_worker():  # a mail's attachment, inside the worker already
        return parse_document(path, source, data, limits)
    document = isolated_parse(path, source, data, limits)
    with using_limits(limits):
        check_text_size(document.sections)
    return document


def parse_document(path: Path, source: str, data: bytes, limits: LoadLimits = DEFAULT_LIMITS) -> ParsedDocument:
    """The parse itself, in this process (the worker calls it; callers want ``load_document``).

    A file whose bytes say it is another format than its name is read as what it is; one that its
    loader calls corrupt gets a second, salvaging try (see salvage.py). Both leave a note on the document.
    """
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise UnsupportedFormat(f"unsupported file type '{path.suffix or path.name}'")
    if not data.strip():
        raise EmptyFile("file is empty")
    configure_unstructured()
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
    with using_limits(limits):
        check_text_size(sections)
    title = next((s.heading.split(" > ")[0] for s in sections if s.heading), None)
    return ParsedDocument(source=source, sections=sections, format=kind, title=title, path=path, notes=notes)


def _parse(suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
    kind, loader = LOADERS[suffix]
    try:
        with using_limits(limits):
            return loader(data, path)
    except FileRejected:
        raise
    except MemoryError as exc:
        raise out_of_memory(limits) from exc
    except RecursionError as exc:  # a parser that recurses per nesting level (HTML, Markdown quotes)
        raise TooLarge(f"{kind.upper()} nests too deeply for its parser (RecursionError)") from exc
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
    except MemoryError as exc:
        raise out_of_memory(limits) from exc
    except FileRejected:
        return None
    except Exception:  # the salvage is a second chance; its own failure leaves the first error standing
        logger.debug("salvaging %s failed", path.name, exc_info=True)
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


def warm_up_parsers() -> None:
    """Start the parser worker and have it import unstructured and load its spaCy model now, not on the first file."""
    load_document(Path("warm-up.md"), "warm-up.md", b"# Warm up\n\nThis paragraph loads the parsers.\n")
