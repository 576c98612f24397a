"""OCR with Tesseract (Debian packages, chi_sim + eng data): images and text-less PDF pages → text."""

from __future__ import annotations

import io
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile
from ingest.loaders.converters import MissingTool, run_tool
from ingest.loaders.limits import TooLarge, active_limits
from ingest.models import Section

OCR_LANGUAGES = "chi_sim+eng"
_CJK = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK})[ \t]+(?={_CJK})")
_SOLID_WORD = re.compile(rf"{_CJK}{{2,}}|[^\W_]{{3,}}")


@lru_cache(maxsize=1)
def tesseract_path() -> str | None:
    return shutil.which("tesseract")


@lru_cache(maxsize=1)
def ocr_languages() -> str:
    """chi_sim+eng where both are installed; otherwise whichever are."""
    binary = tesseract_path()
    if binary is None:
        return "eng"
    listing = run_tool([binary, "--list-langs"], "Tesseract").decode("utf-8", "replace").split()
    wanted = [lang for lang in OCR_LANGUAGES.split("+") if lang in listing]
    return "+".join(wanted) or "eng"


# Tesseract reads glyphs best at 20-40 px; a logo or screenshot under this size is enlarged first.
UPSCALE_BELOW_PX = 1000
MAX_UPSCALE = 3.0
# Tesseract "reads" a few marks into photos and icons ("aN NP,"). An image's text is kept only when at
# least one word is solid: three letters or digits (two Chinese characters) read with this confidence.
SOLID_CONFIDENCE = 80.0


def ocr_image(image: object) -> str:
    """Text in a PIL image. Tesseract spaces out Chinese characters; those gaps are removed."""
    binary = tesseract_path()
    if binary is None:
        raise MissingTool("OCR engine is not installed (tesseract); run `make system-deps`")
    buffer = io.BytesIO()
    prepare_for_ocr(image).save(buffer, format="PNG")
    # One thread per Tesseract: its OpenMP threads contend with each other on a small CPU.
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}
    raw = run_tool(
        [binary, "stdin", "stdout", "-l", ocr_languages(), "--psm", "3", "tsv"],
        "Tesseract OCR", stdin=buffer.getvalue(), env=env,
    )
    words = parse_tsv(raw.decode("utf-8", "replace"))
    if not words or _is_noise(words):
        return ""
    return clean_ocr_text(_layout(words))


def prepare_for_ocr(image: object) -> object:
    """Grayscale on a white ground (transparent pixels are black underneath), small images enlarged."""
    from PIL import Image

    picture: Image.Image = image  # type: ignore[assignment]
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        ground = Image.new("RGBA", rgba.size, "white")
        ground.alpha_composite(rgba)
        picture = ground
    gray = picture.convert("L")
    longest = max(gray.size)
    if 0 < longest < UPSCALE_BELOW_PX:
        factor = min(MAX_UPSCALE, UPSCALE_BELOW_PX / longest)
        gray = gray.resize((round(gray.width * factor), round(gray.height * factor)), Image.Resampling.LANCZOS)
    return gray


@dataclass(frozen=True, slots=True)
class OcrWord:
    paragraph: tuple[int, int, int]  # page, block, paragraph
    line: int
    text: str
    confidence: float


def parse_tsv(tsv: str) -> list[OcrWord]:
    """Tesseract's TSV rows (level, page, block, par, line, word, box x4, conf, text) → its words."""
    words: list[OcrWord] = []
    for row in tsv.splitlines()[1:]:
        fields = row.split("\t")
        if len(fields) != 12 or not fields[11].strip():
            continue
        try:
            page, block, par, line = (int(value) for value in fields[1:5])
            confidence = float(fields[10])
        except ValueError:
            continue
        words.append(OcrWord((page, block, par), line, fields[11].strip(), confidence))
    return words


def _is_noise(words: list[OcrWord]) -> bool:
    sure = [word for word in words if word.confidence >= SOLID_CONFIDENCE]
    lines: dict[tuple[tuple[int, int, int], int], list[str]] = {}
    for word in sure:
        lines.setdefault((word.paragraph, word.line), []).append(word.text)
    # Joined per line so that Chinese, which Tesseract returns a character at a time, forms words.
    return not any(_SOLID_WORD.search(_CJK_GAP.sub("", " ".join(texts))) for texts in lines.values())


def _layout(words: list[OcrWord]) -> str:
    """Words joined into lines, lines into paragraphs (separated by a blank line), in Tesseract's order."""
    out: list[str] = []
    previous: OcrWord | None = None
    for word in words:
        if previous is not None:
            if word.paragraph != previous.paragraph:
                out.append("\n\n")
            elif word.line != previous.line:
                out.append("\n")
            else:
                out.append(" ")
        out.append(word.text)
        previous = word
    return "".join(out)


def clean_ocr_text(text: str) -> str:
    lines = [_CJK_GAP.sub("", line).strip() for line in text.replace("\f", "\n").splitlines()]
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines + [""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    return "\n\n".join(paragraphs)


def open_image(data: bytes, kind: str) -> object:
    """A lazily decoded PIL image, refused before decoding when its pixel count is a bomb."""
    from PIL import Image, UnidentifiedImageError

    _register_heif()
    limits = active_limits()
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"{kind} image is too large to decode (decompression bomb?)") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CorruptFile(f"not a readable {kind} image") from exc
    if image.width * image.height > limits.max_image_pixels:
        raise TooLarge(f"{kind} image is {image.width}x{image.height} pixels, over the limit")
    return image


def load_image(data: bytes, path: Path) -> list[Section]:
    """Every frame of the image (TIFFs hold pages) OCR'd; the frame number is the page."""
    from PIL import ImageOps

    kind = path.suffix.lstrip(".").upper() or "image"
    image = open_image(data, kind)
    frames = min(getattr(image, "n_frames", 1), active_limits().max_pages)
    if path.suffix.lower() == ".gif":
        frames = 1  # animation frames repeat the picture
    sections: list[Section] = []
    for index in range(frames):
        try:
            image.seek(index)  # type: ignore[attr-defined]
            frame = ImageOps.exif_transpose(image)  # phone photos are stored sideways with a rotation tag
            frame.load()
        except (OSError, ValueError, EOFError) as exc:
            raise CorruptFile(f"{kind} image is truncated or damaged: {exc}") from exc
        text = ocr_image(frame)
        if text.strip():
            sections.append(Section(text=text, page=index + 1 if frames > 1 else None, heading=path.name))
    if not sections:
        raise EmptyFile("OCR found no text in the image")
    return sections


@lru_cache(maxsize=1)
def _register_heif() -> None:
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".heic", ".heif")
