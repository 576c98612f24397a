"""Each core format parses offline with its text, headings and pages; bad files fail with a reason."""

from __future__ import annotations

import io
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.errors import CorruptFile, EmptyFile, EncryptedFile, FileRejected, UnsupportedFormat
from ingest.loaders import load_document


def _text(doc) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(s.text for s in doc.sections)


def make_pdf(path: Path, pages: list[str], password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    data = bytes(pdf.output())
    if password:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
        writer.encrypt(password)
        buffer = io.BytesIO()
        writer.write(buffer)
        data = buffer.getvalue()
    path.write_bytes(data)
    return path


def test_utf16_and_cp1252_text_decode(tmp_path: Path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Grüße aus Köln. 你好，世界。".encode("utf-16"))
    assert "Grüße aus Köln" in _text(load_document(utf16, "utf16.txt"))
    assert "你好" in _text(load_document(utf16, "utf16.txt"))
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("The café’s crème brûlée costs €5.".encode("cp1252"))
    assert "café’s crème brûlée costs €5" in _text(load_document(legacy, "legacy.txt"))


def test_markdown_keeps_heading_path(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# Guide\n\n## Install\n\nRun make install first.\n", encoding="utf-8")
    doc = load_document(path, "guide.md")
    section = next(s for s in doc.sections if "make install" in s.text)
    assert section.heading == "Guide > Install"
    assert doc.title == "Guide"


def test_html(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><body><h1>Policies</h1><p>Badges must be worn at all times.</p></body></html>")
    doc = load_document(path, "page.html")
    assert "Badges must be worn" in _text(doc)


def test_pdf_keeps_page_numbers(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "report.pdf", ["The first page talks about apples.", "The second page is about pears."])
    doc = load_document(path, "report.pdf")
    pages = {s.page for s in doc.sections if "pears" in s.text}
    assert pages == {2}


def test_docx_pptx_xlsx(tmp_path: Path) -> None:
    import docx
    import openpyxl
    import pptx

    document = docx.Document()
    document.add_heading("Onboarding", level=1)
    document.add_paragraph("New hires get a laptop on day one.")
    document.save(tmp_path / "a.docx")
    doc = load_document(tmp_path / "a.docx", "a.docx")
    assert "laptop on day one" in _text(doc)
    assert any(s.heading == "Onboarding" for s in doc.sections)

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Roadmap"
    slide.placeholders[1].text = "Ship the search feature in March."
    deck.save(tmp_path / "b.pptx")
    assert "search feature in March" in _text(load_document(tmp_path / "b.pptx", "b.pptx"))

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Prices"
    sheet.append(["product", "price"])
    sheet.append(["widget", 42])
    book.save(tmp_path / "c.xlsx")
    doc = load_document(tmp_path / "c.xlsx", "c.xlsx")
    table = next(s for s in doc.sections if s.is_table)
    assert "| product | price |" in table.text and "| widget | 42 |" in table.text
    assert table.heading == "Prices"


def test_csv_tsv_json_eml(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("city,population\nChengdu,21000000\n")
    assert "| Chengdu | 21000000 |" in _text(load_document(tmp_path / "a.csv", "a.csv"))
    (tmp_path / "a.tsv").write_text("city\tcountry\nLyon\tFrance\n")
    assert "| Lyon | France |" in _text(load_document(tmp_path / "a.tsv", "a.tsv"))
    (tmp_path / "a.json").write_text(json.dumps({"team": {"lead": "Ada", "size": 4}}))
    assert "team.lead: Ada" in _text(load_document(tmp_path / "a.json", "a.json"))
    message = EmailMessage()
    message["Subject"] = "Quarterly review"
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message.set_content("The quarterly review moves to Thursday at 10:00.")
    (tmp_path / "a.eml").write_bytes(bytes(message))
    doc = load_document(tmp_path / "a.eml", "a.eml")
    assert "moves to Thursday" in _text(doc)


@pytest.mark.parametrize(
    ("name", "payload", "error", "reason"),
    [
        ("empty.txt", b"", EmptyFile, "empty"),
        ("blank.md", b"   \n\n", EmptyFile, "empty"),
        ("broken.docx", b"PK\x03\x04 this is not really a zip", CorruptFile, "damaged"),
        ("broken.pdf", b"%PDF-1.4 garbage", CorruptFile, "PDF"),
        ("bad.json", b'{"a": ', CorruptFile, "invalid JSON"),
        ("image.xyz", b"data", UnsupportedFormat, "unsupported"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(tmp_path: Path, name: str, payload: bytes,
                                              error: type[FileRejected], reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(error) as info:
        load_document(path, name)
    assert reason.lower() in info.value.reason.lower()


def test_encrypted_pdf_and_docx_are_named_as_such(tmp_path: Path) -> None:
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile

    path = make_pdf(tmp_path / "secret.pdf", ["classified"], password="s3cret")
    with pytest.raises(EncryptedFile, match="password"):
        load_document(path, "secret.pdf")

    plain = tmp_path / "plain.docx"
    document = docx.Document()
    document.add_paragraph("secret plans")
    document.save(plain)
    encrypted = tmp_path / "locked.docx"
    with plain.open("rb") as source, encrypted.open("wb") as target:
        OOXMLFile(source).encrypt("s3cret", target)
    with pytest.raises(EncryptedFile, match="password"):
        load_document(encrypted, "locked.docx")


def test_yaml_application_tags_read_as_values_but_python_objects_are_refused(tmp_path: Path) -> None:
    template = tmp_path / "stack.yaml"
    template.write_text("Resources:\n  Bucket:\n    Name: !Sub '${Env}-archive'\n    Owner: !Ref OpsTeam\n")
    text = _text(load_document(template, "stack.yaml"))
    assert "Resources.Bucket.Name: ${Env}-archive" in text and "Owner: OpsTeam" in text
    hostile = tmp_path / "hostile.yaml"
    marker = tmp_path / "owned"
    hostile.write_text(f"run: !!python/object/apply:os.system ['touch {marker}']\n")
    document = load_document(hostile, "hostile.yaml")  # kept as the text it is, never constructed
    assert not marker.exists()
    assert "python/object" in document.notes[0] and "plain text" in document.notes[0]
    assert "os.system" in _text(document)


def test_html_whose_body_is_filled_by_scripts_is_found_by_its_title(tmp_path: Path) -> None:
    page = tmp_path / "viewer.html"
    page.write_text("<!DOCTYPE html><html><head><title>Quarterly Model Viewer</title>"
                    "<script src='app.js'></script></head><body></body></html>")
    document = load_document(page, "viewer.html")
    assert _text(document) == "Quarterly Model Viewer" and document.title == "Quarterly Model Viewer"
    empty = tmp_path / "empty.html"
    empty.write_text("<html><head></head><body><script>render()</script></body></html>")
    with pytest.raises(EmptyFile, match="no text"):
        load_document(empty, "empty.html")
