"""OCR throughput on generated A4 pages (200 dpi, Chinese and English lines): pages per second.

Measures Tesseract alone on page images, then the whole scanned-PDF path (render + OCR + split)
through load_document.  Usage: python benchmarks/bench_ocr.py [--pages 6]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ingest.errors import FileRejected
from ingest.loaders import load_document
from ingest.loaders.limits import LoadLimits, using_limits
from ingest.loaders.ocr import ocr_image, ocr_languages

FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
LINES = [
    "第{n}页：仓库安全检查报告，所有员工必须佩戴安全帽。",
    "Page {n}: quarterly inventory of the Chengdu warehouse.",
    "库存盘点显示纸箱数量为一千二百个，比上季度增加百分之八。",
    "Forklift training is required before operating aisle four.",
    "会议决定在十二月之前完成消防演习。",
    "The next audit is scheduled for the first week of March.",
]


def page_image(number: int) -> Image.Image:
    """An A4 page at 200 dpi with 24 text lines, about what an office scanner gives."""
    image = Image.new("L", (1654, 2339), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 34)
    for row in range(24):
        draw.text((120, 150 + row * 86), LINES[row % len(LINES)].format(n=number), fill=0, font=font)
    return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=6)
    args = parser.parse_args()
    pages = [page_image(n) for n in range(1, args.pages + 1)]
    print(f"tesseract languages: {ocr_languages()}; OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT', '1')}; "
          f"CPUs: {os.cpu_count()}")

    with using_limits(LoadLimits()):
        ocr_image(pages[0])  # warm the page cache for the traineddata files
        cpu_before = _children_cpu()
        started = time.perf_counter()
        chars = sum(len(ocr_image(page)) for page in pages)
        seconds = time.perf_counter() - started
        cpu = _children_cpu() - cpu_before
    print(f"OCR page images, one Tesseract at a time: {len(pages)} pages in {seconds:.1f} s = "
          f"{len(pages) / seconds:.2f} pages/s; {cpu / len(pages):.1f} CPU s a page "
          f"(= {len(pages) / cpu:.2f} pages/s per free core); {chars / len(pages):.0f} characters a page")

    with tempfile.TemporaryDirectory() as folder:
        pdf = Path(folder) / "scan.pdf"
        pages[0].save(pdf, save_all=True, append_images=pages[1:], resolution=200)
        started = time.perf_counter()
        _start_worker(Path(folder))
        print(f"worker process start: {time.perf_counter() - started:.1f} s (once per process)")
        started = time.perf_counter()
        document = load_document(pdf, "scan.pdf")
        seconds = time.perf_counter() - started
    found = {s.page for s in document.sections}
    print(f"scanned PDF end to end (render + OCR on all CPUs + split): {len(pages)} pages in {seconds:.1f} s = {len(pages) / seconds:.2f} pages/s "
          f"(text found on {len(found)} pages)")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _start_worker(folder: Path) -> None:
    blank = folder / "blank.png"
    Image.new("L", (32, 32), 255).save(blank)
    with contextlib.suppress(FileRejected):  # no text in a blank picture: expected, the worker is up
        load_document(blank, "blank.png")


if __name__ == "__main__":
    main()
