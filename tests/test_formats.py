"""Every supported format, generated here (LibreOffice, pandoc, PIL with a CJK font), parses and is found.

The corpus is built once per session; each format has a known sentence that must come back out of
load_document + Splitter, and the whole folder (plus broken files) goes through RagService.ingest.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from ingest.errors import EncryptedFile, FileRejected
from ingest.loaders import LoadLimits, format_of, load_document
from ingest.loaders.converters import pandoc_path, soffice_path
from ingest.splitter import Splitter

sys.path.insert(0, str(Path(__file__).parent))
from cfb_writer import build_msg  # noqa: E402

CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

# format file → a sentence that must be found in its chunks
SENTENCES: dict[str, str] = {
    "report.docx": "会议决定明年在成都开设新的研发中心",
    "deck.pptx": "The roadmap slide promises offline search by June",
    "budget.xlsx": "| Hardware | 1200 |",
    "legacy.doc": "The legacy Word memo approves the new parking rules",
    "legacy.xls": "| Printer paper | 35 |",
    "legacy.ppt": "The legacy slide shows the 2005 sales kickoff",
    "open.odt": "The OpenDocument text lists the fire drill on Friday",
    "open.ods": "| Coffee beans | 80 |",
    "open.odp": "The OpenDocument slide explains the hiring plan",
    "letter.rtf": "The rich text letter confirms the contract renewal",
    "book.epub": "The electronic book chapter describes the lighthouse keeper",
    "guide.rst": "The reStructuredText guide explains the backup rotation",
    "notes.org": "The Org notes record the standup decisions",
    "mail.msg": "The travel budget for the third quarter is 48000 euros",
    "export.xml": "The XML export contains the warehouse inventory",
    "events.ndjson": "The deployment finished without errors",
    "config.yaml": "The YAML config sets the retention to ninety days",
    "script.py": "def compute_invoice_total",
    "main.go": "func parseLedgerEntries",
    "query.sql": "SELECT customer_name FROM invoices",
    "text.pdf": "季度报告显示销售额增长了百分之十二",
    "scanned.pdf": "扫描文件",
    "mixed.pdf": "Scanned page about warehouse safety",
    "photo.png": "白板上写着项目截止日期",
    "photo.jpg": "Whiteboard deadline is March",
    "frame.tiff": "Tagged image invoice",
    "shot.bmp": "Bitmap screenshot text",
    "anim.gif": "Graphics interchange sign",
    "web.webp": "Web picture caption",
    "phone.heic": "Phone photo receipt",
}


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    return ImageFont.truetype(CJK_FONT, size)


def text_image(lines: list[str], width: int = 1400, size: int = 44):  # type: ignore[no-untyped-def]
    """A page-like picture of the lines, as a scanner or phone would give it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, 120 + len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((60, 60 + index * size * 2), line, fill="black", font=_font(size))
    return image


def _soffice(sources: list[Path], target: str, out: Path) -> None:
    subprocess.run(
        [str(soffice_path()), f"-env:UserInstallation=file://{out.parent}/lo-profile", "--headless", "--convert-to",
         target, "--outdir", str(out), *map(str, sources)],
        check=True, capture_output=True, timeout=180,
    )


def _docx(path: Path, heading: str, sentence: str, table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph(sentence + "。" if any("\u4e00" <= c <= "\u9fff" for c in sentence) else sentence + ".")
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(path)
    return path


def _pptx(path: Path, title: str, sentence: str) -> Path:
    import pptx

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = title
    slide.placeholders[1].text = sentence
    deck.save(path)
    return path


def _xlsx(path: Path, rows: list[list[object]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Costs"
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def build_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    work = folder.parent / "sources"
    work.mkdir(exist_ok=True)
    s = SENTENCES
    _docx(folder / "report.docx", "年度会议纪要", s["report.docx"], [["Item", "Owner"], ["研发中心", "Li Wei"]])
    _pptx(folder / "deck.pptx", "Roadmap", s["deck.pptx"])
    _xlsx(folder / "budget.xlsx", [["Item", "Cost"], ["Hardware", 1200], ["Travel", 800]])

    # LibreOffice turns OOXML sources into the legacy and OpenDocument formats (one call per target).
    _docx(work / "legacy.docx", "Memo", s["legacy.doc"])
    _docx(work / "open.docx", "Safety", s["open.odt"])
    _docx(work / "letter.docx", "Letter", s["letter.rtf"])
    _docx(work / "text.docx", "季度报告", s["text.pdf"], [["Region", "Growth"], ["West", "12%"]])
    _xlsx(work / "legacy.xlsx", [["Item", "Cost"], ["Printer paper", 35]])
    _xlsx(work / "open.xlsx", [["Item", "Cost"], ["Coffee beans", 80]])
    _pptx(work / "legacy.pptx", "Sales", s["legacy.ppt"])
    _pptx(work / "open.pptx", "Hiring", s["open.odp"])
    for sources, target in [
        (["legacy.docx"], "doc"), (["open.docx"], "odt"), (["letter.docx"], "rtf"), (["text.docx"], "pdf"),
        (["legacy.xlsx"], "xls"), (["open.xlsx"], "ods"), (["legacy.pptx"], "ppt"), (["open.pptx"], "odp"),
    ]:
        _soffice([work / name for name in sources], target, folder)

    book = work / "book.md"
    book.write_text(f"% Lighthouse\n\n# Chapter one\n\n{s['book.epub']}.\n", encoding="utf-8")
    subprocess.run([str(pandoc_path()), str(book), "-o", str(folder / "book.epub")], check=True, timeout=60)
    (folder / "guide.rst").write_text(f"Backups\n=======\n\n{s['guide.rst']}.\n", encoding="utf-8")
    (folder / "notes.org").write_text(f"* Standup\n{s['notes.org']}.\n", encoding="utf-8")
    (folder / "mail.msg").write_bytes(build_msg(
        "Quarterly budget", f"Hello team,\n\n{s['mail.msg']}.\n\n差旅预算已经批准。", "ada@example.com",
        {"budget.xlsx": b"not parsed", "itinerary.pdf": b"not parsed"},
    ))
    (folder / "export.xml").write_text(
        f'<?xml version="1.0"?><export><item id="7"><note>{s["export.xml"]}.</note></item></export>', encoding="utf-8"
    )
    (folder / "events.ndjson").write_text(
        json.dumps({"event": "deploy", "message": s["events.ndjson"]}) + "\n" + json.dumps({"event": "start"}) + "\n"
    )
    (folder / "config.yaml").write_text(f"retention:\n  note: {s['config.yaml']}\n  days: 90\n")
    (folder / "script.py").write_text(f"{s['script.py']}(lines):\n    return sum(lines)\n")
    (folder / "main.go").write_text(f"package main\n\n{s['main.go']}() {{}}\n")
    (folder / "query.sql").write_text(f"{s['query.sql']} WHERE paid = 0;\n")

    text_image(["扫描文件：仓库安全检查", "Scanned archive page 1"]).save(folder / "scanned.pdf", resolution=150)
    _mixed_pdf(folder / "mixed.pdf", work)
    text_image([s["photo.png"], "Project deadline board"]).save(folder / "photo.png")
    text_image([s["photo.jpg"] + " 15", "截止日期"]).save(folder / "photo.jpg", quality=90)
    for name in ("frame.tiff", "shot.bmp", "anim.gif", "web.webp", "phone.heic"):
        if name.endswith(".heic"):
            from pillow_heif import register_heif_opener

            register_heif_opener()
        text_image([s[name]], width=1000).save(folder / name)
    return folder


def _mixed_pdf(path: Path, work: Path) -> None:
    """Page 1 has a text layer; page 2 is only a picture of text (a scan), so only it needs OCR."""
    from fpdf import FPDF

    scan = work / "scan-page.png"
    text_image([SENTENCES["mixed.pdf"], "Wear helmets in aisle four"]).save(scan)
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "The first page of the safety manual has a real text layer.")
    pdf.add_page()
    pdf.image(str(scan), x=10, y=10, w=190)
    path.write_bytes(bytes(pdf.output()))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert soffice_path() and shutil.which("tesseract"), "run `make system-deps` (LibreOffice, Tesseract)"
    return build_corpus(tmp_path_factory.mktemp("formats") / "corpus")


def _chunk_text(path: Path) -> str:
    document = load_document(path, path.name)
    return "\n".join(chunk.index_text for chunk in Splitter(256, 32).split_document(document))


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_each_format_finds_its_sentence(corpus: Path, name: str) -> None:
    text = _chunk_text(corpus / name)
    # OCR and table cells may differ in spacing only; the words themselves must all be there.
    assert _squash(SENTENCES[name]) in _squash(text), f"{name}: {text[:500]!r}"


def test_formats_are_named_by_extension(corpus: Path) -> None:
    assert {format_of(corpus / n) for n in ("legacy.doc", "photo.jpg", "main.go", "events.ndjson")} == {
        "doc", "jpg", "code", "ndjson"
    }


@pytest.mark.parametrize("name", ["report.docx", "budget.xlsx", "open.ods", "legacy.xls"])
def test_tables_stay_markdown_tables_with_their_header(corpus: Path, name: str) -> None:
    document = load_document(corpus / name, name)
    tables = [s for s in document.sections if s.is_table]
    assert tables, f"{name} lost its table"
    assert tables[0].text.splitlines()[1].startswith("| --- |")


def test_long_table_repeats_header_in_every_chunk(tmp_path: Path) -> None:
    rows = [["City", "Population"]] + [[f"City number {i}", 1000 + i] for i in range(300)]
    path = _xlsx(tmp_path / "cities.xlsx", rows)
    chunks = Splitter(128, 16).split_document(load_document(path, "cities.xlsx"))
    assert len(chunks) > 3
    assert all(c.text.startswith("| City | Population |") for c in chunks)
    assert any("| City number 250 | 1250 |" in c.text for c in chunks)


def test_pdf_ruled_table_becomes_a_markdown_table_beside_the_page_text(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, "An ordinary page of prose with no table on it at all.")
    pdf.add_page()
    pdf.multi_cell(0, 6, "Quarterly revenue by region is listed below.")
    with pdf.table() as table:
        for cells in [["Region", "Q1 revenue", "Q2 revenue"]] + [[f"Region {i}", f"{i}.1M", f"{i}.2M"] for i in range(60)]:
            row = table.row()
            for cell in cells:
                row.cell(cell)
    path = tmp_path / "revenue.pdf"
    path.write_bytes(bytes(pdf.output()))
    document = load_document(path, "revenue.pdf")
    tables = [s for s in document.sections if s.is_table]
    assert tables and {s.page for s in tables} == {2, 3}  # the table runs onto the next page
    assert "Quarterly revenue by region" in next(s.text for s in document.sections if s.page == 2 and not s.is_table)
    assert "Region 7" not in " ".join(s.text for s in document.sections if not s.is_table)  # not duplicated as prose
    chunks = Splitter(128, 16).split_document(document)
    row = next(c for c in chunks if "| Region 42 | 42.1M | 42.2M |" in c.text)
    assert row.text.startswith("| Region | Q1 revenue | Q2 revenue |") and row.page == 3


def test_ocr_keeps_page_numbers_and_only_scans_textless_pages(corpus: Path) -> None:
    document = load_document(corpus / "mixed.pdf", "mixed.pdf")
    pages = {s.page: s.text for s in document.sections}
    assert "real text layer" in pages[1]
    assert "warehouse safety" in pages[2]


def test_msg_names_its_attachments(corpus: Path) -> None:
    text = _chunk_text(corpus / "mail.msg")
    assert "budget.xlsx" in text and "itinerary.pdf" in text
    assert "差旅预算已经批准" in _squash(text)


def test_time_budget_fails_a_slow_file_with_a_reason(tmp_path: Path) -> None:
    from PIL import Image

    pages = [text_image([f"Slow scanned page {n}"]) for n in range(4)]
    path = tmp_path / "slow.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(FileRejected, match="took longer than 0.5 s"):
        load_document(path, "slow.pdf", limits=LoadLimits(timeout_s=0.5))
    assert Image.MAX_IMAGE_PIXELS  # the limit in the parent process is untouched by the worker


def test_page_and_pixel_limits(tmp_path: Path) -> None:
    pages = [text_image([f"Page {n}"], width=300, size=20) for n in range(3)]
    path = tmp_path / "three.pdf"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(FileRejected, match="3 pages, over the 2-page limit"):
        load_document(path, "three.pdf", limits=LoadLimits(max_pages=2))
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (1200, 1200), "white").save(big)
    with pytest.raises(FileRejected, match="over the limit"):
        load_document(big, "big.png", limits=LoadLimits(max_image_pixels=1_000_000))


def write_odd_files(folder: Path, corpus: Path) -> dict[str, str]:
    """Broken and hostile files → the word their failure reason must contain."""
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile
    from pypdf import PdfReader, PdfWriter

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.docx").write_bytes(b"")
    plain = folder.parent.parent / "plain.docx"  # outside the folder being ingested
    document = docx.Document()
    document.add_paragraph("secret plans")
    document.save(plain)
    with plain.open("rb") as source, (folder / "locked.docx").open("wb") as target:
        OOXMLFile(source).encrypt("s3cret", target)
    writer = PdfWriter(clone_from=PdfReader(corpus / "text.pdf"))
    writer.encrypt("s3cret")
    with (folder / "locked.pdf").open("wb") as target:
        writer.write(target)
    (folder / "corrupt.xlsx").write_bytes((corpus / "budget.xlsx").read_bytes()[:700])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * (64 << 20))
    (folder / "bomb.docx").write_bytes(buffer.getvalue())
    (folder / "truncated.png").write_bytes((corpus / "photo.png").read_bytes()[:2000])
    (folder / "garbage.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    (folder / "blank.png").write_bytes(_png_without_text())
    return {
        "empty.docx": "empty", "locked.docx": "password", "locked.pdf": "password", "corrupt.xlsx": "damaged",
        "bomb.docx": "decompression bomb", "truncated.png": "truncated", "garbage.doc": "OLE container",
        "blank.png": "no text",
    }


def _png_without_text() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_varied_folder_ingests_with_every_failure_explained(corpus: Path, service, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "shared-drive"
    shutil.copytree(corpus, folder)
    expected = write_odd_files(folder / "odd", corpus)
    service.create_kb("drive", "a messy shared drive")
    report = service.ingest("drive", [folder])
    failures = {Path(f["path"]).name: f["error"] for f in report.failed}
    assert set(failures) == set(expected), failures
    for name, word in expected.items():
        assert word.lower() in failures[name].lower(), (name, failures[name])
    seen = sum(s.seen for s in report.formats.values())
    indexed = sum(s.indexed for s in report.formats.values())
    assert seen == len(SENTENCES) + len(expected)
    assert indexed == len(SENTENCES)
    assert report.formats["docx"].failed == 3 and report.formats["docx"].indexed == 1
    assert report.formats["jpg"].indexed == 1 and report.formats["code"].indexed == 3
    hits = service.search("drive", "差旅预算", top_k=5, mode="bm25")
    assert any(hit.source.endswith("mail.msg") for hit in hits)
    print(json.dumps({fmt: [s.seen, s.indexed, s.failed] for fmt, s in sorted(report.formats.items())}))


def test_encrypted_legacy_word_is_named(tmp_path: Path) -> None:
    """msoffcrypto cannot encrypt .doc, but a .docx encrypted under a .doc name is the same OLE container."""
    import docx
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = tmp_path / "plain.docx"
    document = docx.Document()
    document.add_paragraph("secret")
    document.save(plain)
    locked = tmp_path / "locked.doc"
    with plain.open("rb") as source, locked.open("wb") as target:
        OOXMLFile(source).encrypt("pw", target)
    with pytest.raises(EncryptedFile, match="password"):
        load_document(locked, "locked.doc")


def test_a_parser_that_never_returns_is_killed_and_the_next_file_gets_a_fresh_worker(tmp_path: Path) -> None:
    from ingest.loaders.isolation import IsolatedLoader

    hung = IsolatedLoader(worker_module="tests.hung_worker", kill_grace_s=0.5)
    worker = hung._worker()
    started = time.monotonic()
    with pytest.raises(FileRejected, match="took longer than 0.5 s"):
        hung.parse(tmp_path / "stuck.pdf", "stuck.pdf", b"%PDF-1.4", LoadLimits(timeout_s=0.5))
    assert time.monotonic() - started < 30
    assert worker.poll() is not None  # killed, not left running
    with pytest.raises(FileRejected, match="took longer"):
        hung.parse(tmp_path / "stuck-again.pdf", "stuck-again.pdf", b"%PDF-1.4", LoadLimits(timeout_s=0.5))
    hung.close()

    healthy = IsolatedLoader()
    image = tmp_path / "after.png"
    text_image(["Parsed after a hung worker"]).save(image)
    document = healthy.parse(image, "after.png", image.read_bytes(), LoadLimits())
    assert "Parsed after a hung worker" in " ".join(s.text for s in document.sections)
    healthy.close()
