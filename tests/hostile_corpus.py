"""A corpus of hostile files, generated (nothing binary is checked in): each one small on disk and built to
make a parser expand, recurse, inflate or stall. ``write_hostile_corpus(folder)`` writes them all and returns
what each file is meant to test.

    python -m tests.hostile_corpus FOLDER     # writes the corpus, for trying `rag ingest` by hand
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from pathlib import Path

MB = 1 << 20


def yaml_alias_bomb(levels: int = 9, fan_out: int = 9) -> bytes:
    """Billion laughs in YAML: each level lists the previous one ``fan_out`` times (9^9 leaves in ~400 bytes)."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * fan_out)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
    return ("\n".join(lines) + "\n").encode()


def yaml_recursive_alias() -> bytes:
    """A YAML value that contains itself (SafeLoader builds the cycle happily)."""
    return b"loop: &loop [text, *loop]\n"


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def deep_yaml(depth: int = 50_000) -> bytes:
    return b"a: " + b"[" * depth + b"x" + b"]" * depth + b"\n"


def deep_xml(depth: int = 100_000) -> bytes:
    return b"<?xml version='1.0'?>" + b"<a>" * depth + b"deep" + b"</a>" * depth


def moderately_deep_json(depth: int = 500) -> bytes:
    """Deeper than the nesting limit, shallow enough for Python's own parser: the limit, not a crash, decides."""
    return b'{"k": ' * depth + b'"deep value"' + b"}" * depth


def xml_billion_laughs() -> bytes:
    entities = ['<!ENTITY lol "lol">']
    for level in range(1, 10):
        refs = f"&lol{level - 1};" if level > 1 else "&lol;"
        entities.append(f'<!ENTITY lol{level} "{refs * 10}">')
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(entities) + "\n]>\n"
        "<lolz><title>Laughs</title><body>&lol9;</body></lolz>\n"
    ).encode()


def xml_external_entity() -> bytes:
    return (b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
            b"<r><note>external entity below</note><leak>&xxe;</leak></r>\n")


def _docx(document_xml: bytes | None = None, extra: list[tuple[str, bytes]] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/'
            'document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.'
            'main+xml"/></Types>'))
        if document_xml is not None:
            archive.writestr("word/document.xml", document_xml)
        for name, data in extra or []:
            archive.writestr(name, data)
    return buffer.getvalue()


def docx_zip_bomb(inflated_mb: int = 200) -> bytes:
    """A DOCX whose one part inflates from ~200 KB to ``inflated_mb`` MB of spaces (ratio ~1000)."""
    return _docx(b"<w:document>" + b" " * (inflated_mb * MB) + b"</w:document>")


def docx_lying_sizes(inflated_mb: int = 64) -> bytes:
    """A DOCX whose part's headers claim 1 KB while its deflate stream holds ``inflated_mb`` MB."""
    real = b"<w:document>" + b" " * (inflated_mb * MB) + b"</w:document>"
    data = bytearray(_docx(real))
    claimed = 1024
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        offset = data.find(signature)
        while offset != -1:
            name_at = 30 if signature == b"PK\x03\x04" else 46
            name_length = struct.unpack_from("<H", data, offset + (26 if name_at == 30 else 28))[0]
            if bytes(data[offset + name_at: offset + name_at + name_length]) == b"word/document.xml":
                struct.pack_into("<I", data, offset + size_at, claimed)
            offset = data.find(signature, offset + 4)
    return bytes(data)


def docx_entity_bomb() -> bytes:
    """A real DOCX whose body XML declares billion-laughs entities and uses the last one in a paragraph."""
    from tests.office_files import docx_bytes

    entities = "".join(['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{level} "{(f"&lol{level - 1};" if level > 1 else "&lol;") * 10}">' for level in range(1, 10)])
    source = zipfile.ZipFile(io.BytesIO(docx_bytes(["Quarterly report text"])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "word/document.xml":
                declaration, body = data.split(b"?>", 1)
                body = body.replace(b"Quarterly report text", b"Quarterly &lol9; text")
                data = declaration + b"?>" + f"<!DOCTYPE w:document [{entities}]>".encode() + body
            archive.writestr(member, data)
    return buffer.getvalue()


def xlsx_many_members(members: int = 12_000) -> bytes:
    """An XLSX-shaped zip with more members than any real workbook has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        for index in range(members):
            archive.writestr(f"xl/worksheets/sheet{index}.xml", "")
    return buffer.getvalue()


def epub_zip_bomb(inflated_mb: int = 200) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", zipfile.ZIP_STORED)
        archive.writestr("OEBPS/chapter.xhtml", b"<html><body><p>" + b"a" * (inflated_mb * MB) + b"</p></body></html>")
    return buffer.getvalue()


def png_pixel_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header claiming width x height pixels with one tiny compressed row of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def _pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


_PAGE_TEXT = b"BT /F1 12 Tf 72 720 Td (A page of a hostile PDF) Tj ET"
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf_claiming_a_million_pages() -> bytes:
    """One real page, and a page tree whose /Count says 1,000,000."""
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(_PAGE_TEXT) + _PAGE_TEXT + b"\nendstream",
        _FONT,
    ])


def pdf_page_tree_bomb(levels: int = 6, fan_out: int = 10) -> bytes:
    """A page tree whose nodes list the same child ``fan_out`` times: 10^6 pages from a dozen objects,
    with an honest-looking /Count of 1."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for _ in range(levels):
        child = len(objects) + 2
        kids = b" ".join([f"{child} 0 R".encode()] * fan_out)
        objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count 1 >>")
    page = len(objects) + 1
    objects.append(f"<< /Type /Page /Parent {page - 1} 0 R /MediaBox [0 0 612 792] /Contents {page + 1} 0 R "
                   f"/Resources << /Font << /F1 {page + 2} 0 R >> >> >>".encode())
    objects.append(b"<< /Length %d >>\nstream\n" % len(_PAGE_TEXT) + _PAGE_TEXT + b"\nendstream")
    objects.append(_FONT)
    return _pdf(objects)


def pdf_stream_bomb(inflated_mb: int = 300) -> bytes:
    """One page whose content stream inflates from ~300 KB to ``inflated_mb`` MB."""
    content = zlib.compress(b"% " + b" " * (inflated_mb * MB) + b"\n" + _PAGE_TEXT, 9)
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        _FONT,
    ])


def long_line_of_sentences(size: int = 10 * MB) -> bytes:
    sentence = b"The quick brown fox jumps over the lazy dog near the riverbank. "
    return (sentence * (size // len(sentence) + 1))[:size]


def long_line_without_spaces(size: int = 10 * MB) -> bytes:
    """Like a base64 blob pasted on one line: no space, no newline, a '+' or '/' every few dozen characters."""
    unit = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo+YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo/"
    return (unit * (size // len(unit) + 1))[:size]


def invalid_utf8() -> bytes:
    text = "Invoice notes: the shipment of turbine blades arrived on time. " * 20
    data = bytearray(text.encode())
    for position in range(50, len(data), 97):
        data[position] = 0xFF  # never valid in UTF-8
    return bytes(data)


UTF16_SENTENCE = "The lighthouse keeper logs every passing ship in the harbour registry."


def utf16_without_bom() -> bytes:
    return (UTF16_SENTENCE + "\n") .encode("utf-16-le") * 20


def nul_filled(size: int = 4 * MB) -> bytes:
    return b"\x00" * size


def deep_html(depth: int = 100_000) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def deep_markdown_quotes(depth: int = 20_000) -> bytes:
    return b">" * depth + b" deep quote\n"


def wide_csv(columns: int = 2_000_000) -> bytes:
    """One row of two million one-letter cells."""
    return b",".join([b"h"] * columns) + b"\n" + b",".join([b"v"] * columns) + b"\n"


# name → (bytes, what the file attacks)
def hostile_files(long_line_mb: int = 10) -> dict[str, tuple[bytes, str]]:
    """``long_line_mb``: the size of the two single-line files (their chunks dominate an ingest's time)."""
    line = long_line_mb * MB
    return {
        "alias_bomb.yaml": (yaml_alias_bomb(), "YAML alias expansion: 9^9 leaves from ~400 bytes"),
        "alias_bomb_small.yaml": (yaml_alias_bomb(levels=7), "YAML alias expansion: 4.8 M leaves (tens of MB)"),
        "recursive_alias.yaml": (yaml_recursive_alias(), "a YAML value that contains itself"),
        "deep.json": (deep_json(), "100,000 nested JSON arrays"),
        "deep500.json": (moderately_deep_json(), "500 nested JSON objects"),
        "deep.yaml": (deep_yaml(), "50,000 nested YAML flow sequences"),
        "deep.xml": (deep_xml(), "100,000 nested XML elements"),
        "billion_laughs.xml": (xml_billion_laughs(), "XML entity expansion (10^9 'lol's)"),
        "external_entity.xml": (xml_external_entity(), "XML external entity naming /etc/passwd"),
        "zip_bomb.docx": (docx_zip_bomb(), "DOCX part inflating 1000x to 200 MB"),
        "entity_bomb.docx": (docx_entity_bomb(), "DOCX body declaring billion-laughs XML entities"),
        "lying_sizes.docx": (docx_lying_sizes(), "DOCX part whose headers understate its size"),
        "many_members.xlsx": (xlsx_many_members(), "XLSX zip with 12,000 members"),
        "zip_bomb.epub": (epub_zip_bomb(), "EPUB chapter inflating 1000x to 200 MB"),
        "pixel_bomb.png": (png_pixel_bomb(), "PNG header claiming 100,000 x 100,000 pixels"),
        "million_pages.pdf": (pdf_claiming_a_million_pages(), "PDF page tree claiming 1,000,000 pages"),
        "page_tree_bomb.pdf": (pdf_page_tree_bomb(), "PDF page tree with 10^6 pages from shared nodes"),
        "stream_bomb.pdf": (pdf_stream_bomb(), "PDF content stream inflating to 300 MB"),
        "long_line.txt": (long_line_of_sentences(line), f"{long_line_mb} MB single line of sentences"),
        "long_blob.txt": (long_line_without_spaces(line), f"{long_line_mb} MB single line with no space (base64-like)"),
        "invalid_utf8.txt": (invalid_utf8(), "text with invalid UTF-8 bytes"),
        "utf16_nobom.txt": (utf16_without_bom(), "UTF-16-LE text without a BOM"),
        "nul_filled.txt": (nul_filled(), "4 MB of NUL bytes"),
        "nul_filled.pdf": (nul_filled(1 * MB), "1 MB of NUL bytes named .pdf"),
        "deep.html": (deep_html(), "100,000 nested HTML divs"),
        "deep_quotes.md": (deep_markdown_quotes(), "20,000 nested Markdown block quotes"),
        "wide.csv": (wide_csv(), "a CSV row of 2,000,000 cells"),
    }


def write_hostile_corpus(folder: Path, long_line_mb: int = 10) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    described: dict[str, str] = {}
    for name, (data, what) in hostile_files(long_line_mb).items():
        (folder / name).write_bytes(data)
        described[name] = what
    return described


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for name, what in write_hostile_corpus(target).items():
        print(f"{(target / name).stat().st_size:>12,}  {name:24}  {what}")
