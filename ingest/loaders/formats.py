"""One loader per file format: bytes in, sections out. Registered by extension in ``ingest.loaders``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.errors import CorruptFile, EmptyFile, EncryptedFile
from ingest.loaders.decoding import decode_text
from ingest.loaders.elements import elements_to_sections
from ingest.loaders.office import check_ooxml
from ingest.models import Section

Loader = Callable[[bytes, Path], list[Section]]


def load_text(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.text import partition_text

    return elements_to_sections(partition_text(text=decode_text(data)), trust_titles=False)


def load_markdown(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.md import partition_md

    return elements_to_sections(partition_md(text=decode_text(data)))


def load_html(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.html import partition_html

    return elements_to_sections(partition_html(text=decode_text(data)))


def load_docx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "DOCX")
    from unstructured.partition.docx import partition_docx

    return elements_to_sections(partition_docx(file=io.BytesIO(data)))


def load_pptx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "PPTX")
    from unstructured.partition.pptx import partition_pptx

    return elements_to_sections(partition_pptx(file=io.BytesIO(data)))


def load_xlsx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "XLSX")
    from unstructured.partition.xlsx import partition_xlsx

    sections: list[Section] = []
    for element in partition_xlsx(file=io.BytesIO(data)):
        sheet = element.metadata.page_name
        for section in elements_to_sections([element], heading_prefix=sheet):
            section.heading = section.heading or sheet
            sections.append(section)
    return sections


def load_csv(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.csv import partition_csv

    text = decode_text(data)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else None
    elements = partition_csv(file=io.BytesIO(text.encode("utf-8")), delimiter=delimiter, include_header=True)
    return elements_to_sections(elements)


def load_email(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.email import partition_email

    elements = partition_email(file=io.BytesIO(data), process_attachments=False)
    sections = elements_to_sections(elements)
    subject = next((e.metadata.subject for e in elements if getattr(e.metadata, "subject", None)), None)
    if subject:
        for section in sections:
            section.heading = section.heading or subject
    return sections


def load_json(data: bytes, path: Path) -> list[Section]:
    try:
        value = json.loads(decode_text(data))
    except json.JSONDecodeError as exc:
        raise CorruptFile(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    lines = list(_flatten_json(value, ""))
    if not lines:
        raise EmptyFile("JSON file has no values")
    return [Section(text="\n".join(lines))]


def _flatten_json(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten_json(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten_json(item, f"{prefix}[{index}]")
    elif value is not None and str(value).strip():
        yield f"{prefix}: {value}" if prefix else str(value)


def load_pdf(data: bytes, path: Path) -> list[Section]:
    """Text layer per page with pypdf, then unstructured classifies each page's text.

    unstructured's own partition_pdf needs unstructured-inference (layout models, torchvision
    and a hub download) even for its "fast" strategy; pypdf gives the same text layer offline.
    """
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError
    from unstructured.partition.text import partition_text

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile("PDF is password-protected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except EncryptedFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFile(f"damaged PDF: {exc}") from exc
    except Exception as exc:
        if "decrypt" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise EncryptedFile("PDF is password-protected") from exc
        raise
    sections: list[Section] = []
    for number, page_text in enumerate(pages, start=1):
        if not page_text.strip():
            continue
        for section in elements_to_sections(partition_text(text=page_text), trust_titles=False):
            section.page = number
            sections.append(section)
    if not sections:
        raise EmptyFile("PDF has no text layer (scanned pages need OCR)")
    return sections


LOADERS: dict[str, tuple[str, Loader]] = {
    ".txt": ("txt", load_text),
    ".text": ("txt", load_text),
    ".log": ("txt", load_text),
    ".md": ("md", load_markdown),
    ".markdown": ("md", load_markdown),
    ".html": ("html", load_html),
    ".htm": ("html", load_html),
    ".pdf": ("pdf", load_pdf),
    ".docx": ("docx", load_docx),
    ".pptx": ("pptx", load_pptx),
    ".xlsx": ("xlsx", load_xlsx),
    ".csv": ("csv", load_csv),
    ".tsv": ("tsv", load_csv),
    ".eml": ("eml", load_email),
    ".json": ("json", load_json),
}
