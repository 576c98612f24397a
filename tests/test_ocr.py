"""OCR of the pictures a drive holds: small logos and screenshots, transparent PNGs, and photos with no text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ingest.errors import EmptyFile
from ingest.loaders import load_document
from ingest.loaders.ocr import _is_noise, parse_tsv

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
TSV_HEADER = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw(size: tuple[int, int], text: str, font_px: int, ground: tuple[int, ...], ink: tuple[int, ...],
          mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, size, ground)
    ImageDraw.Draw(image).text((6, 6), text, font=ImageFont.truetype(FONT, font_px), fill=ink)
    return image


def test_small_logo_text_is_read_after_enlarging(tmp_path: Path) -> None:
    # 9 px glyphs, as on a web badge: at this size Tesseract alone reads "Ledgertase".
    logo = _draw((190, 60), "Powered by\nLedgerbase", 9, (255, 255, 255), (30, 30, 30))
    text = "\n".join(s.text for s in load_document(tmp_path / "badge.png", "badge.png", _png(logo)).sections)
    assert "Powered by" in text and "Ledgerbase" in text


def test_dark_text_on_a_transparent_ground_is_read(tmp_path: Path) -> None:
    # Transparent pixels are black underneath; flattened as they are, the text would vanish into them.
    sign = _draw((900, 120), "Fire exit on the left", 48, (0, 0, 0, 0), (0, 0, 0, 255), mode="RGBA")
    assert Image.open(io.BytesIO(_png(sign))).convert("L").getextrema() == (0, 0)  # black on "black"
    document = load_document(tmp_path / "sign.png", "sign.png", _png(sign))
    assert "Fire exit on the left" in document.sections[0].text


def test_chinese_text_in_a_small_picture_is_read(tmp_path: Path) -> None:
    note = _draw((300, 50), "仓库盘点在三月三日", 22, (255, 255, 255), (0, 0, 0))
    document = load_document(tmp_path / "note.png", "note.png", _png(note))
    assert "仓库盘点在三月三日" in document.sections[0].text.replace(" ", "")


def test_a_picture_without_text_is_reported_as_such(tmp_path: Path) -> None:
    picture = Image.new("RGB", (640, 420), (90, 140, 60))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((200, 100, 440, 340), fill=(230, 200, 40))
    draw.rectangle((0, 330, 640, 420), fill=(60, 90, 40))
    with pytest.raises(EmptyFile, match="OCR found no text"):
        load_document(tmp_path / "meadow.jpg", "meadow.jpg", _png(picture))


def _tsv(words: list[tuple[int, int, float, str]]) -> str:
    rows = [f"5\t1\t1\t{par}\t{line}\t{n}\t0\t0\t10\t10\t{conf}\t{text}"
            for n, (par, line, conf, text) in enumerate(words, start=1)]
    return "\n".join([TSV_HEADER, "1\t1\t0\t0\t0\t0\t0\t0\t640\t480\t-1\t", *rows])


def test_marks_read_into_an_icon_are_noise_but_real_words_are_not() -> None:
    assert _is_noise(parse_tsv(_tsv([(1, 1, 65.0, "aN"), (1, 1, 26.0, "NP,")])))
    assert _is_noise(parse_tsv(_tsv([(1, 1, 40.0, "Certificates")])))  # a long word, but a guess
    assert not _is_noise(parse_tsv(_tsv([(1, 1, 92.0, "GPGME"), (1, 2, 20.0, "DP")])))
    # Chinese comes a character at a time: two sure characters on a line make a word.
    assert not _is_noise(parse_tsv(_tsv([(1, 1, 93.0, "项"), (1, 1, 91.0, "目")])))
    assert _is_noise(parse_tsv(_tsv([(1, 1, 93.0, "项"), (1, 2, 91.0, "目")])))
