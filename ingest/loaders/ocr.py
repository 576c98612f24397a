"""OCR with Tesseract (Debian packages, chi_sim + eng data): images and text-less PDF pages → text."""

from __future__ import annotations

import io
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

from ingest.errors import CorruptFile, EmptyFile
from ingest.loaders.converters import MissingTool, run_tool
from ingest.loaders.limits import TooLarge, active_limits
from ingest.models import Section

OCR_LANGUAGES = "chi_sim+eng"
_CJK = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK})[ \t]+(?={_CJK})")


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


def ocr_image(image: object) -> str:
    """Text in a PIL image. Tesseract spaces out Chinese characters; those gaps are removed."""
    binary = tesseract_path()
    if binary is None:
        raise MissingTool("OCR engine is not installed (tesseract); run `make system-deps`")
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")  # type: ignore[attr-defined]
    # One thread per Tesseract: its OpenMP threads contend with each other on a small CPU.
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")}
    raw = run_tool(
        [binary, "stdin", "stdout", "-l", ocr_languages(), "--psm", "3", "-c", "preserve_interword_spaces=1"],
        "Tesseract OCR", stdin=buffer.getvalue(), env=env,
    )
    return clean_ocr_text(raw.decode("utf-8", "replace"))


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
