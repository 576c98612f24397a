"""Bytes → text for plain-text formats, coping with BOMs, UTF-16 and legacy code pages."""

from __future__ import annotations

import codecs

import chardet

from ingest.errors import CorruptFile, EmptyFile

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    if not data.strip():
        raise EmptyFile("file is empty")
    # NUL never belongs in text; a run of them is a zeroed disk block or a padded tail, not a binary file.
    text = _decode(data).replace("\x00", "")
    if not text.strip():
        raise EmptyFile("file has no text")
    control = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if control > len(text[:4096]) * 0.05:
        raise CorruptFile("file looks binary, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _looks_like_utf16(data):
        for encoding in ("utf-16-le", "utf-16-be"):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
    guess = chardet.detect(data[:65536])
    encoding = guess.get("encoding") or "cp1252"
    if encoding.lower() in {"ascii", "iso-8859-1"}:
        encoding = "cp1252"  # superset that maps the 0x80-0x9f range (smart quotes) too
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("cp1252", errors="replace")


def _looks_like_utf16(data: bytes) -> bool:
    sample = data[:4096]
    return len(sample) >= 4 and sample.count(0) >= len(sample) // 4
