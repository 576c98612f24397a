"""Files a shared drive really holds: misnamed ones, interrupted copies, hand-edited data files.

* ``sniff_suffix`` tells a file's format from its first bytes, so a PDF saved as ``.doc`` or an
  old "Word" file that is really HTML reaches the loader that can read it.
* ``recover`` is the second try after a loader calls a file corrupt: a zip-based document whose
  central directory is cut off is rebuilt from its local headers (and, failing that, its text is
  read from whatever XML survived); a data file (JSON, YAML, XML) that does not parse is indexed
  as the text it is. Each recovery says what it did, and the ingest report shows it.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.loaders.limits import TooLarge, active_limits
from ingest.models import Section

_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ODF_MIMETYPES = {
    b"application/vnd.oasis.opendocument.text": ".odt",
    b"application/vnd.oasis.opendocument.spreadsheet": ".ods",
    b"application/vnd.oasis.opendocument.presentation": ".odp",
    b"application/epub+zip": ".epub",
}
_OOXML_FOLDERS = (("word/", ".docx"), ("xl/", ".xlsx"), ("ppt/", ".pptx"))
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"II*\x00", ".tiff"),
    (b"MM\x00*", ".tiff"),
)
# Formats whose files are bytes, not text: only for these is HTML content taken as "misnamed"
# (an .md or .xml file holding HTML is a text file doing its job).
BINARY_SUFFIXES = frozenset({
    ".pdf", ".doc", ".xls", ".ppt", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".msg",
    ".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif",
})
# Formats whose parse failure still leaves useful text: the file is indexed as plain text instead.
DATA_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".xml"})
MIN_SALVAGED_WORD_CHARS = 16
ZIP_SUFFIXES = frozenset({".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub"})


def sniff_suffix(data: bytes, claimed: str) -> str | None:
    """The suffix that the content's magic bytes name, or None when they name nothing this knows."""
    head = data[:1024]
    # Readers accept "%PDF-" anywhere in the first KiB; a text file that merely mentions it must start with it.
    if head.lstrip().startswith(b"%PDF-") or (claimed in BINARY_SUFFIXES and b"%PDF-" in head):
        return ".pdf"
    for magic, suffix in _IMAGE_MAGIC:
        if head.startswith(magic):
            return suffix
    if head.startswith(b"{\\rtf"):
        return ".rtf"
    if head.startswith(_ZIP_LOCAL_HEADER):
        return _zip_document_suffix(data)
    if claimed in BINARY_SUFFIXES:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if text.startswith((b"<!doctype html", b"<html")) or (text.startswith(b"<?xml") and b"<html" in text):
            return ".html"
    return None


def _zip_document_suffix(data: bytes) -> str | None:
    """OpenDocument/EPUB by their leading ``mimetype`` member; OOXML by its part folders."""
    names = [name for name, _ in _local_headers(data, limit=64)]
    if names and names[0] == "mimetype":
        start = 30 + len("mimetype")
        extra = struct.unpack("<H", data[28:30])[0]
        mimetype = data[start + extra: start + extra + 64].split(b"PK", 1)[0].strip()
        return _ODF_MIMETYPES.get(mimetype)
    for folder, suffix in _OOXML_FOLDERS:
        if any(name.startswith(folder) for name in names):
            return suffix
    return None


@dataclass(slots=True)
class _Member:
    name: str
    content: bytes
    complete: bool


def _local_headers(data: bytes, limit: int | None = None) -> list[tuple[str, int]]:
    """(name, header offset) of each local file header, in file order."""
    found: list[tuple[str, int]] = []
    offset = data.find(_ZIP_LOCAL_HEADER)
    while offset != -1 and offset + 30 <= len(data) and (limit is None or len(found) < limit):
        flags = struct.unpack("<H", data[offset + 6: offset + 8])[0]
        compressed_size = struct.unpack("<I", data[offset + 18: offset + 22])[0]
        name_length, extra_length = struct.unpack("<HH", data[offset + 26: offset + 30])
        name = data[offset + 30: offset + 30 + name_length].decode("utf-8", "replace")
        found.append((name, offset))
        # Jump over the member's data where its size is known, so a "PK\3\4" inside it is not taken for a header.
        skip = compressed_size if not flags & 0x8 else 0
        offset = data.find(_ZIP_LOCAL_HEADER, offset + 30 + name_length + extra_length + skip)
    return found


def salvage_zip_members(data: bytes) -> list[_Member]:
    """Every member whose bytes are present, read from the local headers (no central directory needed).

    A member cut off by the end of the file comes back with what inflates of it and ``complete=False``.
    Inflated sizes count against ``max_uncompressed_bytes``, so a bomb is refused here too.
    """
    budget = active_limits().max_uncompressed_bytes
    members: list[_Member] = []
    headers = _local_headers(data)
    for index, (name, offset) in enumerate(headers):
        flags, method = struct.unpack("<HH", data[offset + 6: offset + 10])
        crc, compressed_size = struct.unpack("<II", data[offset + 14: offset + 22])
        name_length, extra_length = struct.unpack("<HH", data[offset + 26: offset + 30])
        start = offset + 30 + name_length + extra_length
        end = headers[index + 1][1] if index + 1 < len(headers) else len(data)
        if flags & 0x1 or name.endswith("/"):
            continue  # encrypted member, or a folder entry
        raw = data[start:end] if flags & 0x8 or not compressed_size else data[start: start + compressed_size]
        if method == 0:
            content, complete = raw, len(raw) >= compressed_size > 0
        elif method == 8:
            content, complete = _inflate(raw, budget + 1)
        else:
            continue
        budget -= len(content)
        if budget < 0:
            raise TooLarge("damaged zip container inflates past the size limit (decompression bomb?)")
        if complete and not flags & 0x8 and crc and zlib.crc32(content) != crc:
            complete = False
        members.append(_Member(name, content, complete))
    return members


def _inflate(raw: bytes, limit: int) -> tuple[bytes, bool]:
    """Raw deflate data → (what inflates before the end or the first damaged byte, whether it all did)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pieces: list[bytes] = []
    size = 0
    for start in range(0, len(raw), _INFLATE_STEP):  # in steps, so a damaged block keeps what came before it
        try:
            piece = inflater.decompress(raw[start: start + _INFLATE_STEP], limit - size)
        except zlib.error:
            return b"".join(pieces), False
        pieces.append(piece)
        size += len(piece)
        if size >= limit or inflater.eof:
            break
    return b"".join(pieces), inflater.eof


_INFLATE_STEP = 4096


def rebuild_zip(members: list[_Member]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            if member.complete:
                archive.writestr(member.name, member.content,
                                 zipfile.ZIP_STORED if member.name == "mimetype" else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


# Parts that hold a document's words, in reading order; the rest (styles, themes, media) do not.
_TEXT_PARTS = re.compile(
    r"^(word/(document|header\d*|footer\d*|footnotes|endnotes)\.xml|ppt/slides/slide\d+\.xml|"
    r"xl/sharedStrings\.xml|content\.xml|.*\.x?html?)$"
)
_PARAGRAPH_TAGS = {"p", "h", "si", "li", "td", "th", "title", "h1", "h2", "h3", "h4", "h5", "h6"}


def text_from_parts(members: list[_Member]) -> list[Section]:
    """Paragraph text of the document parts that survived, a truncated one included (read leniently)."""
    from lxml import etree

    parser = _lenient_xml_parser()
    parts = sorted((m for m in members if _TEXT_PARTS.match(m.name)), key=lambda m: _natural_key(m.name))
    sections: list[Section] = []
    for member in parts:
        try:
            root = etree.fromstring(member.content, parser)
        except etree.XMLSyntaxError:
            continue
        if root is None:
            continue
        paragraphs = [" ".join("".join(el.itertext()).split()) for el in root.iter()
                      if isinstance(el.tag, str) and _local_name(el.tag) in _PARAGRAPH_TAGS
                      and not _has_paragraph_ancestor(el)]
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            sections.append(Section(text=text))
    return sections


def _has_paragraph_ancestor(element: object) -> bool:
    parent = element.getparent()  # type: ignore[attr-defined]
    while parent is not None:
        if isinstance(parent.tag, str) and _local_name(parent.tag) in _PARAGRAPH_TAGS:
            return True
        parent = parent.getparent()
    return False


def _local_name(tag: str) -> str:
    # Not etree.QName: XML read in recovery mode can hold tag names it refuses ("w:r0:").
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


Loader = Callable[[bytes, Path], list[Section]]


def recover_zip(data: bytes, path: Path, loader: Loader) -> tuple[list[Section], str] | None:
    """A zip document with a damaged container: its intact parts through the real loader, else their text."""
    members = salvage_zip_members(data)
    if not members:
        return None
    complete = sum(m.complete for m in members)
    if complete == len(members):
        try:
            sections = loader(rebuild_zip(members), path)
        except Exception:
            sections = []
        if any(s.text.strip() for s in sections):
            return sections, f"rebuilt its zip container from {complete} intact parts"
    sections = text_from_parts(members)
    if not sections:
        return None
    return sections, (f"read the text of {complete} intact and {len(members) - complete} cut-off parts; "
                      "the layout (headings, tables) is lost")


def recover_data_file(data: bytes, path: Path) -> tuple[list[Section], str] | None:
    """A JSON/YAML/XML file that does not parse: its text, so its words are still found."""
    from ingest.loaders.decoding import decode_text

    if path.suffix.lower() == ".xml":
        lines = _xml_lines_leniently(data)
        if lines:
            return [Section(text="\n".join(lines))], "read the elements before the damage in XML recovery mode"
    text = decode_text(data)
    if len(re.findall(r"\w", text)) < MIN_SALVAGED_WORD_CHARS:
        return None  # a stub like '{"a": ' says nothing worth finding; its parse error is the better answer
    return [Section(text=text)], "indexed it as plain text"


def _xml_lines_leniently(data: bytes) -> list[str]:
    from lxml import etree

    from ingest.loaders.structured import xml_lines

    try:
        root = etree.fromstring(data, _lenient_xml_parser())
    except etree.XMLSyntaxError:
        return []
    return xml_lines(root) if root is not None else []


def _lenient_xml_parser() -> Any:
    """Recovery mode (reads up to the damage); like every XML parse here, no DTDs, entities or network."""
    from lxml import etree

    return etree.XMLParser(recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
