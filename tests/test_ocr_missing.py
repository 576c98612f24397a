"""A scanned PDF without an OCR engine says that OCR is not installed, not that OCR found nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ingest.errors import EmptyFile, FileRejected
from ingest.loaders import load_document
from ingest.loaders.isolation import _shared as parser_worker


@pytest.fixture(autouse=True)
def fresh_parser_worker():  # type: ignore[no-untyped-def]
    """The parser worker process inherits PATH when it starts: start one per test, under its PATH."""
    parser_worker.close()
    yield
    parser_worker.close()


def _scanned_pdf(text: str | None) -> bytes:
    page = Image.new("RGB", (1240, 1754), (255, 255, 255))
    if text:
        ImageDraw.Draw(page).text((100, 100), text, fill=(0, 0, 0))
    buffer = io.BytesIO()
    page.save(buffer, format="PDF", resolution=150)
    return buffer.getvalue()


def test_scanned_pdf_without_tesseract_names_the_missing_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract on this PATH
    with pytest.raises(FileRejected, match="OCR is not installed") as raised:
        load_document(tmp_path / "scan.pdf", "scan.pdf", _scanned_pdf("Invoice 42"))
    assert "make system-deps" in str(raised.value) and "found no text" not in str(raised.value)


@pytest.mark.skipif(__import__("shutil").which("tesseract") is None, reason="needs tesseract (make system-deps)")
def test_blank_scan_with_tesseract_says_ocr_found_no_text(tmp_path: Path) -> None:
    with pytest.raises(EmptyFile, match="OCR found no text"):
        load_document(tmp_path / "blank.pdf", "blank.pdf", _scanned_pdf(None))
