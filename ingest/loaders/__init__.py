"""Turn one file into a ParsedDocument, or raise FileRejected with a readable reason."""

from __future__ import annotations

from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile, FileRejected, UnsupportedFormat
from ingest.loaders.formats import ISOLATED_SUFFIXES, LOADERS, Loader
from ingest.loaders.isolation import isolated_load
from ingest.loaders.limits import DEFAULT_LIMITS, LoadLimits, using_limits
from ingest.models import ParsedDocument
from ingest.offline import configure_unstructured

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
    process that is killed when it overruns ``limits.timeout_s``."""
    suffix = path.suffix.lower()
    entry = LOADERS.get(suffix)
    if entry is None:
        raise UnsupportedFormat(f"unsupported file type '{path.suffix or path.name}'")
    kind, loader = entry
    configure_unstructured()
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise EmptyFile("file is empty")
    try:
        if suffix in ISOLATED_SUFFIXES:
            sections = isolated_load(suffix, data, path, limits)
        else:
            with using_limits(limits):
                sections = loader(data, path)
    except FileRejected:
        raise
    except Exception as exc:  # a parser's own error: name it, keep the run going
        raise CorruptFile(f"could not parse {kind.upper()}: {type(exc).__name__}: {_first_line(exc)}") from exc
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise EmptyFile("no text found in file")
    title = next((s.heading.split(" > ")[0] for s in sections if s.heading), None)
    return ParsedDocument(source=source, sections=sections, format=kind, title=title, path=path)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


def warm_up_parsers() -> None:
    """Import unstructured's text partitioners and load its spaCy model now, not on the first file."""
    load_document(Path("warm-up.md"), "warm-up.md", b"# Warm up\n\nThis paragraph loads the parsers.\n")
