"""Misnamed and damaged files, as a shared drive holds them: read as what they are, or salvaged, and said so."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

from ingest.errors import CorruptFile, FileRejected
from ingest.loaders import LoadLimits, load_document

sys.path.insert(0, str(Path(__file__).parent))
from office_files import docx_bytes  # noqa: E402

PARAGRAPHS = [f"Paragraph {n}: the archive keeps record number {n * 7919} for the audit." for n in range(1, 121)]


def _pdf(sentence: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in range(3):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"{sentence} (page {page + 1}). " * 8)
    return bytes(pdf.output())


def _with_member_last(data: bytes, name: str) -> tuple[bytes, int]:
    """The same zip with ``name`` written last; and the offset where that member's compressed bytes start."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info.filename, source.read(info))
        offset = buffer.tell() + 30 + len(name)
        target.writestr(name, source.read(name))
    return buffer.getvalue(), offset


def _chunk_text(path: Path, data: bytes) -> str:
    return "\n".join(section.text for section in load_document(path, path.name, data).sections)


def test_pdf_named_doc_is_read_as_pdf_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "minutes.doc"
    document = load_document(path, path.name, _pdf("The board approved the new canteen menu"))
    assert document.format == "pdf"
    assert "The board approved the new canteen menu" in "\n".join(s.text for s in document.sections)
    assert document.notes == ["content is PDF, though the name says .doc"]
    assert {s.page for s in document.sections} == {1, 2, 3}


def test_web_page_saved_as_doc_is_read_as_html(tmp_path: Path) -> None:
    html = b"<!DOCTYPE html><html><body><h1>Travel policy</h1><p>Economy class for flights under six hours.</p></body></html>"
    document = load_document(tmp_path / "policy.doc", "policy.doc", html)
    assert document.format == "html"
    assert "Economy class for flights under six hours." in document.sections[0].text
    assert document.notes == ["content is HTML, though the name says .doc"]


def test_html_in_a_text_format_stays_that_format(tmp_path: Path) -> None:
    document = load_document(tmp_path / "notes.md", "notes.md", b"<html><p>Inline HTML is markdown too.</p></html>\n")
    assert document.format == "md" and document.notes == []


def test_docx_whose_central_directory_is_cut_off_is_rebuilt_with_its_table(tmp_path: Path) -> None:
    data = docx_bytes(PARAGRAPHS[:5], table=[["Office", "Phone"], ["Chengdu", "028-5550199"]])
    cut = data[: data.rfind(b"PK\x01\x02") - 10]  # an interrupted copy: every part, no directory
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(cut))
    document = load_document(tmp_path / "archive.docx", "archive.docx", cut)
    text = "\n".join(s.text for s in document.sections)
    assert PARAGRAPHS[4] in text
    assert "| Chengdu | 028-5550199 |" in text and "| Office | Phone |" in text
    assert len(document.notes) == 1
    assert "zip container is damaged" in document.notes[0] and "rebuilt its zip container" in document.notes[0]


def test_docx_cut_inside_its_text_keeps_the_paragraphs_before_the_cut(tmp_path: Path) -> None:
    data, start = _with_member_last(docx_bytes(PARAGRAPHS), "word/document.xml")
    compressed = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").compress_size
    cut = data[: start + compressed // 2]
    text = _chunk_text(tmp_path / "half.docx", cut)
    assert PARAGRAPHS[0] in text and PARAGRAPHS[20] in text
    assert PARAGRAPHS[-1] not in text
    notes = load_document(tmp_path / "half.docx", "half.docx", cut).notes
    assert "1 cut-off parts" in notes[0] and "layout" in notes[0]


def test_damaged_zip_that_inflates_past_the_limit_is_refused_as_a_bomb(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (32 << 20))
    data = buffer.getvalue()
    cut = data[: data.rfind(b"PK\x01\x02")]
    with pytest.raises(FileRejected, match="decompression bomb"):
        load_document(tmp_path / "bomb.docx", "bomb.docx", cut, limits=LoadLimits(max_uncompressed_bytes=8 << 20))


def test_truncated_pdf_fails_with_its_reason(tmp_path: Path) -> None:
    data = _pdf("This text is cut off")
    with pytest.raises(CorruptFile, match="damaged PDF"):
        load_document(tmp_path / "cut.pdf", "cut.pdf", data[: len(data) // 2])


def test_truncated_json_is_indexed_as_plain_text(tmp_path: Path) -> None:
    data = json.dumps({"service": "billing", "owner": "The payments team owns the billing service",
                       "replicas": 3}, indent=2).encode()[:-12]
    document = load_document(tmp_path / "service.json", "service.json", data)
    assert "The payments team owns the billing service" in document.sections[0].text
    assert document.notes[0].startswith("invalid JSON at line") and "plain text" in document.notes[0]


def test_truncated_xml_keeps_the_elements_before_the_damage(tmp_path: Path) -> None:
    data = b'<?xml version="1.0"?><export><item id="1"><note>Forklift inspection is due in May</note></item><item id="2"><no'
    document = load_document(tmp_path / "export.xml", "export.xml", data)
    assert "export/item/note: Forklift inspection is due in May" in document.sections[0].text
    assert "export/item@id: 1" in document.sections[0].text
    assert "recovery mode" in document.notes[0]


def test_ingest_reports_what_it_recovered_and_search_finds_it(service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "drive"
    folder.mkdir()
    (folder / "minutes.doc").write_bytes(_pdf("The board approved the new canteen menu"))
    whole = docx_bytes(["The warehouse in Wuhan closes for inventory on 3 March."])
    (folder / "copy.docx").write_bytes(whole[: whole.rfind(b"PK\x01\x02") - 10])
    (folder / "cut.pdf").write_bytes(_pdf("never indexed")[:900])
    (folder / "fine.txt").write_text("A file with nothing wrong in it.\n")
    service.create_kb("drive", "")
    report = service.ingest("drive", [folder])
    recovered = {Path(item["path"]).name: item["note"] for item in report.recovered}
    assert set(recovered) == {"minutes.doc", "copy.docx"}
    assert "content is PDF" in recovered["minutes.doc"]
    assert [Path(f["path"]).name for f in report.failed] == ["cut.pdf"]
    assert report.formats["doc"].indexed == 1 and report.formats["docx"].indexed == 1
    assert report.to_json()["recovered"] == report.recovered
    stored = {doc.source: doc for doc in service.catalog.documents("drive")}
    assert stored["minutes.doc"].note == recovered["minutes.doc"] and stored["fine.txt"].note is None
    assert stored["cut.pdf"].status == "failed"
    hits = service.search("drive", "Wuhan warehouse inventory", top_k=3, mode="bm25")
    assert hits and hits[0].source.endswith("copy.docx")


def test_text_with_a_zeroed_block_keeps_the_text_around_it(tmp_path: Path) -> None:
    before = "".join(f"Line {n} of the handbook before the bad block.\n" for n in range(100)).encode()
    after = "".join(f"Line {n} of the handbook after the bad block.\n" for n in range(100)).encode()
    text = _chunk_text(tmp_path / "handbook.txt", before + bytes(4096) + after)
    assert "Line 99 of the handbook before the bad block." in text
    assert "Line 0 of the handbook after the bad block." in text and "\x00" not in text


def test_a_program_named_txt_is_still_refused_as_binary(tmp_path: Path) -> None:
    program = Path(sys.executable).resolve().read_bytes()[:65536]
    with pytest.raises(CorruptFile, match="looks binary"):
        load_document(tmp_path / "notes.txt", "notes.txt", program)


def test_the_ui_shows_how_a_file_was_recovered() -> None:
    from rag.indexing import IngestReport
    from rag.store.catalog import DocumentInfo
    from webui.render import document_rows, ingest_summary

    report = IngestReport(kb="drive", added=2, failed=[{"path": "cut.pdf", "error": "damaged PDF: EOF"}],
                          recovered=[{"path": "minutes.doc", "note": "content is PDF, though the name says .doc"}])
    summary = ingest_summary(report, ["minutes.doc", "cut.pdf", "fine.txt"], "en")
    stored = DocumentInfo(doc_id="1", source="minutes.doc", status="indexed", chunks=3, error=None, format="pdf",
                          content_hash=None, size=10, title=None, path=None, updated_at=0.0,
                          note="content is PDF, though the name says .doc")
    assert document_rows([stored], "en")[0][-1] == "⚠️ content is PDF, though the name says .doc"
    assert "- ⚠️ `minutes.doc` — content is PDF, though the name says .doc" in summary
    assert "- ❌ `cut.pdf` — damaged PDF: EOF" in summary and "- ✅ `fine.txt`" in summary


def test_a_text_file_that_mentions_the_pdf_header_stays_text(tmp_path: Path) -> None:
    notes = b"Every PDF starts with a header line such as %PDF-1.7 followed by binary comment bytes.\n"
    document = load_document(tmp_path / "pdf-notes.txt", "pdf-notes.txt", notes)
    assert document.format == "txt" and document.notes == []
    assert "%PDF-1.7" in document.sections[0].text


def test_docx_with_a_zeroed_block_in_its_text_keeps_the_paragraphs_before_it(tmp_path: Path) -> None:
    data, start = _with_member_last(docx_bytes(PARAGRAPHS), "word/document.xml")
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml")
    bad = start + info.compress_size * 2 // 3
    damaged = data[:bad] + bytes(512) + data[bad + 512:]  # a bad disk block; the central directory survives
    document = load_document(tmp_path / "bad-block.docx", "bad-block.docx", damaged)
    text = "\n".join(s.text for s in document.sections)
    assert PARAGRAPHS[0] in text and PARAGRAPHS[40] in text and PARAGRAPHS[-1] not in text
    assert "cut-off parts" in document.notes[0]
