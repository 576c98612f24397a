"""PDF: the text layer per page, and OCR for the pages that have none (scans), decided page by page."""

from __future__ import annotations

import io
import logging
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile, EncryptedFile
from ingest.loaders.elements import NO_LANGUAGE_DETECTION, elements_to_sections, rows_to_markdown
from ingest.loaders.limits import TooLarge, active_limits, seconds_left
from ingest.models import Section

# A page whose text layer has fewer visible characters than this is treated as a scan.
MIN_TEXT_CHARS = 16
OCR_DPI = 200
# Oversized pages (a photo saved at 72 dpi is a 20-inch page) are rendered no larger than A4 at 200 dpi:
# Tesseract reads Chinese worse, and slower, when glyphs get much bigger than scanner size.
MAX_RENDER_PX = 2339
# A content stream that draws rectangles or lines may hold a ruled table; only such pages are handed to
# pdfplumber's table finder (~50 ms a page, against ~3 ms for pypdf's text).
_DRAWS_LINES = re.compile(rb"(?:^|\s)(?:re|l)\s")

logger = logging.getLogger(__name__)


def load_pdf(data: bytes, path: Path) -> list[Section]:
    """Text layer per page with pypdf, classified by unstructured; text-less pages rendered and OCR'd.

    unstructured's own partition_pdf needs unstructured-inference (layout models, torchvision
    and a hub download) even for its "fast" strategy; pypdf gives the same text layer offline.
    """
    from unstructured.partition.text import partition_text

    pages, drawn = _text_layer(data)
    limits = active_limits()
    scanned = [number for number, text in enumerate(pages, start=1) if _visible(text) < MIN_TEXT_CHARS]
    if len(scanned) > limits.max_ocr_pages:
        logger.warning("%s: %d pages without a text layer; only the first %d are OCR'd (max_ocr_pages)",
                       path.name, len(scanned), limits.max_ocr_pages)
    ocr_text = _ocr_pages(data, scanned[: limits.max_ocr_pages]) if scanned else {}
    tables = _tables(data, [n for n in drawn if n not in scanned])
    sections: list[Section] = []
    for number, page_text in enumerate(pages, start=1):
        seconds_left()
        page_tables, text_outside = tables.get(number, ([], None))
        text = ocr_text.get(number) or (page_text if text_outside is None else text_outside)
        if text.strip():
            for section in elements_to_sections(partition_text(text=text, languages=NO_LANGUAGE_DETECTION), trust_titles=False):
                section.page = number
                sections.append(section)
        sections.extend(Section(text=table, page=number, is_table=True) for table in page_tables)
    if not sections:
        from ingest.loaders.ocr import tesseract_path

        if scanned and tesseract_path() is None:  # say which: OCR is absent, not blind
            from ingest.loaders.converters import MissingTool

            raise MissingTool("PDF has no text layer and OCR is not installed (tesseract); run `make system-deps`")
        raise EmptyFile("PDF has no text layer and OCR found no text")
    return sections


def _text_layer(data: bytes) -> tuple[list[str], list[int]]:
    """Each page's text, and the (1-based) numbers of the pages that draw lines or rectangles."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile("PDF is password-protected")
        check_page_count(reader)
        count = len(reader.pages)
        if count > active_limits().max_pages:
            raise TooLarge(f"PDF has {count} pages, over the {active_limits().max_pages}-page limit (ingest.max_pages)")
        pages: list[str] = []
        drawn: list[int] = []
        for number, page in enumerate(reader.pages, start=1):
            seconds_left()
            pages.append(page.extract_text() or "")
            contents = page.get_contents()
            if contents is not None and _DRAWS_LINES.search(contents.get_data()):
                drawn.append(number)
        return pages, drawn
    except (EncryptedFile, TooLarge):
        raise
    except LimitReachedError as exc:  # pypdf's own caps on inflated streams and page-tree entries
        raise TooLarge(f"PDF is over a parser limit (decompression bomb?): {exc}") from exc
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise CorruptFile(f"damaged PDF: {exc}") from exc
    except Exception as exc:
        if "decrypt" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise EncryptedFile("PDF is password-protected") from exc
        raise


def check_page_count(reader: object) -> None:
    """Refuse a PDF that claims (``/Count``) or holds more than ``max_pages`` pages before pypdf flattens its
    page tree: a tree whose nodes list the same child ten times is a million pages from a dozen objects,
    and flattening it costs seconds and memory per page. The walk stops at the limit."""
    from pypdf.generic import ArrayObject, DictionaryObject

    limit = active_limits().max_pages
    root = reader.trailer["/Root"]["/Pages"]  # type: ignore[attr-defined]
    claimed = _resolved(root.get("/Count")) if isinstance(root, DictionaryObject) else None
    if isinstance(claimed, int) and claimed > limit:
        raise TooLarge(f"PDF declares {claimed:,} pages, over the {limit:,}-page limit (ingest.max_pages)")
    pages, visited, stack = 0, 0, [root]
    while stack:
        node = stack.pop()
        node = _resolved(node)
        visited += 1
        if not isinstance(node, DictionaryObject) or visited > 4 * limit + 1000:
            if visited > 4 * limit + 1000:
                raise TooLarge(f"PDF page tree has more than {4 * limit + 1000:,} entries (ingest.max_pages)")
            continue
        kids = _resolved(node.get("/Kids"))
        if node.get("/Type") == "/Pages" or isinstance(kids, ArrayObject):
            stack.extend(kids if isinstance(kids, ArrayObject) else [])
            continue
        pages += 1
        if pages > limit:
            raise TooLarge(f"PDF has more than {limit:,} pages, over the {limit:,}-page limit (ingest.max_pages)")


def _resolved(value: object) -> object:
    return value.get_object() if hasattr(value, "get_object") else value


def _tables(data: bytes, numbers: list[int]) -> dict[int, tuple[list[str], str]]:
    """Ruled tables found by pdfplumber as markdown, with the page's text outside them, by page number."""
    if not numbers:
        return {}
    import pdfplumber

    found: dict[int, tuple[list[str], str]] = {}
    with pdfplumber.open(io.BytesIO(data)) as document:
        for number in numbers:
            seconds_left()
            page = document.pages[number - 1]
            tables = page.find_tables()
            markdown = [m for m in (_table_markdown(table.extract()) for table in tables) if m]
            if markdown:
                outside = page
                for table in tables:
                    outside = outside.outside_bbox(table.bbox)
                found[number] = (markdown, outside.extract_text() or "")
            page.close()
    return found


def _table_markdown(rows: list[list[str | None]]) -> str:
    cleaned = [[" ".join((cell or "").split()).replace("|", "\\|") for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    # A one-row or one-column "table" is a box around text, not a table.
    if len(cleaned) < 2 or max(len(row) for row in cleaned) < 2:
        return ""
    return rows_to_markdown(cleaned)


def _visible(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def _ocr_pages(data: bytes, numbers: list[int]) -> dict[int, str]:
    """Render only the given (1-based) pages with pdfium and OCR them, one Tesseract per CPU."""
    import pypdfium2 as pdfium

    from ingest.loaders.ocr import ocr_image, tesseract_path

    if tesseract_path() is None:
        logger.warning("PDF has %d page(s) without text and no OCR engine (tesseract) is installed", len(numbers))
        return {}
    document = pdfium.PdfDocument(data)
    pending: dict[int, Future[str]] = {}
    # Tesseract runs as a subprocess, so threads give real parallelism; the budget travels in each context.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        try:
            for number in numbers:
                seconds_left()
                page = document[number - 1]
                width, height = page.get_size()
                scale = min(OCR_DPI / 72, MAX_RENDER_PX / max(width, height, 1))
                image = page.render(scale=scale, grayscale=True).to_pil()
                page.close()
                pending[number] = pool.submit(copy_context().run, ocr_image, image)
            return {number: future.result() for number, future in pending.items()}
        except BaseException:
            for future in pending.values():
                future.cancel()
            raise
        finally:
            document.close()
