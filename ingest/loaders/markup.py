"""Documents pandoc reads (odt, rtf, epub, rst, org): converted to HTML, then split like HTML."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders.converters import pandoc_to_html
from ingest.loaders.decoding import decode_text
from ingest.loaders.elements import NO_LANGUAGE_DETECTION, elements_to_sections
from ingest.loaders.legacy import check_odf
from ingest.loaders.limits import check_zip_container
from ingest.models import Section


def _html_sections(html: str) -> list[Section]:
    from unstructured.partition.html import partition_html

    return elements_to_sections(partition_html(text=html, languages=NO_LANGUAGE_DETECTION)) if html.strip() else []


def load_odt(data: bytes, path: Path) -> list[Section]:
    check_odf(data, "ODT")
    return _html_sections(pandoc_to_html(data, "odt", ".odt"))


def load_epub(data: bytes, path: Path) -> list[Section]:
    check_zip_container(data, "EPUB")
    return _html_sections(pandoc_to_html(data, "epub", ".epub"))


def load_rtf(data: bytes, path: Path) -> list[Section]:
    return _html_sections(pandoc_to_html(data, "rtf", ".rtf"))


def load_rst(data: bytes, path: Path) -> list[Section]:
    return _html_sections(pandoc_to_html(decode_text(data).encode("utf-8"), "rst", ".rst"))


def load_org(data: bytes, path: Path) -> list[Section]:
    return _html_sections(pandoc_to_html(decode_text(data).encode("utf-8"), "org", ".org"))
