"""One loader per file format: bytes in, sections out. Registered by extension in ``ingest.loaders``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile
from ingest.loaders.attachments import attachment_sections
from ingest.loaders.decoding import decode_text
from ingest.loaders.elements import NO_LANGUAGE_DETECTION, elements_to_sections
from ingest.loaders.limits import TextBudget, TooLarge
from ingest.loaders.office import check_ooxml
from ingest.loaders.pdf import load_pdf
from ingest.loaders.structured import flatten, parse_json
from ingest.models import Section

Loader = Callable[[bytes, Path], list[Section]]


def load_text(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.text import partition_text

    return elements_to_sections(partition_text(text=decode_text(data), languages=NO_LANGUAGE_DETECTION), trust_titles=False)


def load_markdown(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.md import partition_md

    return elements_to_sections(partition_md(text=decode_text(data), languages=NO_LANGUAGE_DETECTION))


def load_html(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.html import partition_html

    text = decode_text(data)
    sections = elements_to_sections(partition_html(text=text, languages=NO_LANGUAGE_DETECTION))
    if not any(section.text.strip() for section in sections):
        title = _html_title(text)  # a page whose body is filled in by scripts still names itself
        if title:
            sections = [Section(text=title, heading=title)]
    return sections


def _html_title(text: str) -> str | None:
    from lxml import html

    try:
        titles = html.fromstring(text).xpath("//title/text()")
    except Exception:  # lxml refuses empty or odd documents; the caller reports "no text"
        return None
    title = " ".join(" ".join(titles).split())
    return title or None


def load_docx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "DOCX")
    from unstructured.partition.docx import partition_docx

    return elements_to_sections(partition_docx(file=io.BytesIO(data), languages=NO_LANGUAGE_DETECTION))


def load_pptx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "PPTX")
    from unstructured.partition.pptx import partition_pptx

    return elements_to_sections(partition_pptx(file=io.BytesIO(data), languages=NO_LANGUAGE_DETECTION))


def load_xlsx(data: bytes, path: Path) -> list[Section]:
    check_ooxml(data, "XLSX")
    from unstructured.partition.xlsx import partition_xlsx

    sections: list[Section] = []
    for element in partition_xlsx(file=io.BytesIO(data), languages=NO_LANGUAGE_DETECTION):
        sheet = element.metadata.page_name
        for section in elements_to_sections([element], heading_prefix=sheet):
            section.heading = section.heading or sheet
            sections.append(section)
    return sections


MAX_CSV_COLUMNS = 10_000


def load_csv(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.csv import partition_csv

    text = decode_text(data)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else None
    header = text[: text.find("\n") if "\n" in text else len(text)]
    columns = max(header.count(sep) for sep in ("\t", ",", ";", "|")) + 1
    if columns > MAX_CSV_COLUMNS:  # pandas and the HTML table of 2 M cells spend minutes and gigabytes
        raise TooLarge(f"{path.suffix.lstrip('.').upper() or 'CSV'} header has {columns:,} columns, over the "
                       f"{MAX_CSV_COLUMNS:,}-column limit")
    elements = partition_csv(file=io.BytesIO(text.encode("utf-8")), delimiter=delimiter, include_header=True,
                             languages=NO_LANGUAGE_DETECTION)
    return elements_to_sections(elements)


def load_email(data: bytes, path: Path) -> list[Section]:
    from unstructured.partition.email import partition_email

    elements = partition_email(file=io.BytesIO(data), process_attachments=False, languages=NO_LANGUAGE_DETECTION)
    sections = elements_to_sections(elements)
    subject = next((e.metadata.subject for e in elements if getattr(e.metadata, "subject", None)), None)
    if subject:
        for section in sections:
            section.heading = section.heading or subject
    attached, names = attachment_sections(_email_attachments(data), subject or path.stem)
    if names:
        sections.append(Section(text="Attachments: " + ", ".join(names), heading=subject or path.stem))
    return [*sections, *attached]


def _email_attachments(data: bytes) -> list[tuple[str, bytes]]:
    import email
    from email import policy

    message = email.message_from_bytes(data, policy=policy.default)
    found: list[tuple[str, bytes]] = []
    for part in message.iter_attachments():  # type: ignore[attr-defined]
        name = part.get_filename()
        payload = part.get_payload(decode=True)
        if name and isinstance(payload, bytes):
            found.append((name, payload))
    return found


def load_json(data: bytes, path: Path) -> list[Section]:
    try:
        value = parse_json(decode_text(data))
    except json.JSONDecodeError as exc:
        raise CorruptFile(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    lines = list(flatten(value, budget=TextBudget()))
    if not lines:
        raise EmptyFile("JSON file has no values")
    return [Section(text="\n".join(lines))]


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

# Registered after LOADERS exists: these modules reuse the OOXML loaders above (doc → docx, ...).
from ingest.loaders import legacy, mail, markup, structured  # noqa: E402
from ingest.loaders.code import CODE_SUFFIXES, load_code  # noqa: E402
from ingest.loaders.ocr import IMAGE_SUFFIXES, load_image  # noqa: E402

LOADERS.update({
    ".doc": ("doc", legacy.load_doc),
    ".xls": ("xls", legacy.load_xls),
    ".ppt": ("ppt", legacy.load_ppt),
    ".ods": ("ods", legacy.load_ods),
    ".odp": ("odp", legacy.load_odp),
    ".odt": ("odt", markup.load_odt),
    ".rtf": ("rtf", markup.load_rtf),
    ".epub": ("epub", markup.load_epub),
    ".rst": ("rst", markup.load_rst),
    ".org": ("org", markup.load_org),
    ".msg": ("msg", mail.load_msg),
    ".xml": ("xml", structured.load_xml),
    ".ndjson": ("ndjson", structured.load_ndjson),
    ".jsonl": ("ndjson", structured.load_ndjson),
    ".yaml": ("yaml", structured.load_yaml),
    ".yml": ("yaml", structured.load_yaml),
})
_IMAGE_NAMES = {".jpeg": "jpg", ".tif": "tiff", ".heif": "heic"}
LOADERS.update({suffix: (_IMAGE_NAMES.get(suffix, suffix[1:]), load_image) for suffix in IMAGE_SUFFIXES})
LOADERS.update({suffix: ("code", load_code) for suffix in CODE_SUFFIXES})
