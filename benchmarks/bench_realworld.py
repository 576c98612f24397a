"""Ingest of real-world files this project did not make: a sample of what already lies on the machine.

    .venv/bin/python benchmarks/bench_realworld.py [--per-format 8] [--images 10] [--max-mb 5] [--seed 0]
        [--natural N] [--damaged N] [--dry-run]

Walks system documentation and package data (``--roots``, by default /usr/share, /usr/lib, /usr/local,
/etc and this venv's site-packages; symbolic links, hidden names, .gz and /usr/share/package-lists are
skipped), groups the readable files of at most ``--max-mb`` by the format the loaders give their
extension, and draws a fixed-seed sample of ``--per-format`` files from each format.  Empty files stay
in: they are real too.  Selection rules, printed with the results:

* images (OCR is slow): only pictures of at least ``--min-image-kb`` (smaller ones are icons, not
  documents), ``--images`` of them in all, drawn round-robin across the image formats;
* .msg/.doc/.xls/.ppt only when the file is an OLE container (Tcl's .msg files are message catalogs,
  not Outlook mails).

``--natural N`` draws N files uniformly instead, with no per-format quota and no image size floor, so
formats come in the proportions the roots hold them (``--roots /usr/share/doc`` is one real documentation
folder).  ``--damaged N`` adds N broken copies of sampled files, as interrupted copies, bad disk blocks
and misnamed saves leave them on a shared drive: cut off at 40-90% of their length, 4 KiB (a quarter of
a smaller file) overwritten with zeros, or saved under another format's extension.  They are counted
with the rest and listed with their damage.

The sample is copied flat (unique names, extensions kept) into a temporary folder and ingested by the
real CLI (``rag kb create`` then ``rag --debug ingest --json``) with a fresh RAG_HOME.  Prints the totals,
a per-format table and every failure with the original path.  Exits 0 whatever the figures, 1 when the
CLI printed a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from ingest.loaders import format_of, is_supported
from ingest.loaders.legacy import OLE_MAGIC
from ingest.loaders.ocr import IMAGE_SUFFIXES

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
DEFAULT_ROOTS = [Path("/usr/share"), Path("/usr/lib"), Path("/usr/local"), Path("/etc"), SITE_PACKAGES]
EXCLUDED = (Path("/usr/share/package-lists"), Path("/proc"), Path("/sys"))
OLE_SUFFIXES = {".msg", ".doc", ".xls", ".ppt"}
IMAGE_FORMATS = {format_of(Path("x" + suffix)) for suffix in IMAGE_SUFFIXES}


def collect(roots: list[Path], max_bytes: int, min_image_bytes: int) -> tuple[dict[str, list[Path]], dict[str, int]]:
    """Candidate files by format, sorted; and how many files each rule left out."""
    found: dict[str, set[Path]] = defaultdict(set)
    skipped: dict[str, int] = defaultdict(int)
    project = Path(__file__).resolve().parents[1]
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not d.startswith(".") and here / d not in EXCLUDED]
            if here.is_relative_to(project) and not here.is_relative_to(SITE_PACKAGES):
                continue
            for name in files:
                path = here / name
                if name.startswith(".") or name.endswith(".gz") or not is_supported(path) or path.is_symlink():
                    continue
                try:
                    size = path.stat().st_size
                    if size > max_bytes:
                        skipped[f"over {max_bytes / 1e6:g} MB"] += 1
                        continue
                    fmt = format_of(path)
                    if fmt in IMAGE_FORMATS and size < min_image_bytes:
                        skipped["image under the size floor"] += 1
                        continue
                    if path.suffix.lower() in OLE_SUFFIXES:
                        with path.open("rb") as handle:
                            if handle.read(len(OLE_MAGIC)) != OLE_MAGIC:
                                skipped[f"{path.suffix.lower()} without an OLE container"] += 1
                                continue
                    elif not os.access(path, os.R_OK):
                        raise PermissionError
                except OSError:
                    skipped["unreadable"] += 1
                    continue
                found[fmt].add(path)
    return {fmt: sorted(paths) for fmt, paths in sorted(found.items())}, dict(skipped)


def draw(candidates: dict[str, list[Path]], per_format: int, images: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    picked: list[Path] = []
    image_pools: list[list[Path]] = []
    for fmt, paths in candidates.items():
        shuffled = rng.sample(paths, len(paths))
        if fmt in IMAGE_FORMATS:
            image_pools.append(shuffled[:per_format])
        else:
            picked.extend(shuffled[:per_format])
    while images > 0 and any(image_pools):  # round-robin, so that png does not crowd out the rest
        for pool in image_pools:
            if pool and images > 0:
                picked.append(pool.pop(0))
                images -= 1
    return picked


def draw_natural(candidates: dict[str, list[Path]], count: int, seed: int) -> list[Path]:
    everything = sorted(path for paths in candidates.values() for path in paths)
    return random.Random(seed).sample(everything, min(count, len(everything)))


# A misnamed save: the extension of a format the content is not (each key's content under its value's name).
MISNAMED = {"pdf": ".doc", "html": ".xls", "docx": ".doc", "xlsx": ".xls", "odt": ".docx", "json": ".txt",
            "md": ".html", "xml": ".json", "png": ".jpg", "jpg": ".pdf"}


def damage(sample: list[Path], count: int, seed: int) -> list[tuple[Path, str, bytes, str]]:
    """(original, damage, bytes, file suffix) for ``count`` broken copies of non-empty sampled files."""
    rng = random.Random(seed + 1)
    sources = [path for path in sample if path.stat().st_size > 64]
    made: list[tuple[Path, str, bytes, str]] = []
    for number, path in enumerate(rng.sample(sources, min(count, len(sources)))):
        data = path.read_bytes()
        kind = ("cut", "zeroed", "misnamed")[number % 3]
        if kind == "misnamed" and format_of(path) not in MISNAMED:
            kind = "cut"
        if kind == "cut":
            keep = rng.uniform(0.4, 0.9)
            made.append((path, f"cut at {keep:.0%}", data[: int(len(data) * keep)], path.suffix))
        elif kind == "zeroed":  # a bad block: 4 KiB, or a quarter of a smaller file
            run = min(4096, len(data) // 4)
            start = rng.randrange(0, len(data) - run)
            made.append((path, f"{run} bytes zeroed at byte {start}", data[:start] + bytes(run) + data[start + run:],
                         path.suffix))
        else:
            suffix = MISNAMED[format_of(path)]
            made.append((path, f"saved as {suffix}", data, suffix))
    return made


def run(rag: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(rag), *args], env=env, capture_output=True, text=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-format", type=int, default=8)
    parser.add_argument("--images", type=int, default=10, help="pictures in all, across the image formats")
    parser.add_argument("--max-mb", type=float, default=5.0)
    parser.add_argument("--min-image-kb", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--roots", type=Path, nargs="+", default=DEFAULT_ROOTS)
    parser.add_argument("--natural", type=int, default=0, metavar="N",
                        help="draw N files uniformly (no per-format quota, no image floor)")
    parser.add_argument("--damaged", type=int, default=0, metavar="N", help="add N broken copies of sampled files")
    parser.add_argument("--dry-run", action="store_true", help="print the sample and stop")
    args = parser.parse_args()

    started = time.perf_counter()
    min_image_bytes = 0 if args.natural else int(args.min_image_kb * 1e3)
    candidates, skipped = collect(args.roots, int(args.max_mb * 1e6), min_image_bytes)
    if args.natural:
        sample = draw_natural(candidates, args.natural, args.seed)
        rule = f"{len(sample)} files drawn uniformly (seed {args.seed})"
    else:
        sample = draw(candidates, args.per_format, args.images, args.seed)
        rule = (f"{args.per_format} a format (seed {args.seed}), images >= {args.min_image_kb:g} KB, "
                f"{args.images} in all")
    broken = damage(sample, args.damaged, args.seed)
    print(f"roots: {' '.join(map(str, args.roots))}")
    print(f"candidates by format: {', '.join(f'{fmt} {len(paths)}' for fmt, paths in candidates.items())}")
    print(f"left out: {', '.join(f'{rule} {n}' for rule, n in sorted(skipped.items())) or 'nothing'}")
    print(f"rule: {rule}; {len(broken)} damaged copies; survey took {time.perf_counter() - started:.1f} s")
    if args.dry_run:
        print("\n".join(f"{format_of(path):8} {path.stat().st_size:>9} {path}" for path in sample))
        print("\n".join(f"damaged  {how:>24} {path}" for path, how, _, _ in broken))
        return

    rag = Path(sys.executable).parent / "rag"
    with tempfile.TemporaryDirectory(prefix="bench-realworld-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        origin: dict[str, str] = {}
        for number, path in enumerate(sample):
            name = f"{number:03d}-{path.name}"
            shutil.copyfile(path, folder / name)
            origin[name] = str(path)
        for number, (path, how, data, suffix) in enumerate(broken, start=len(sample)):
            name = f"{number:03d}-damaged-{path.stem}{suffix}"
            (folder / name).write_bytes(data)
            origin[name] = f"{path}, {how}"
        env = {**os.environ, "RAG_HOME": str(Path(tmp) / "home")}
        created = run(rag, ["kb", "create", "realworld"], env)
        if created.returncode:
            sys.exit(f"rag kb create failed ({created.returncode}): {created.stderr.strip()}")
        started = time.perf_counter()
        result = run(rag, ["--debug", "ingest", "--kb", "realworld", str(folder), "--json"], env)
        seconds = time.perf_counter() - started

    traceback = "Traceback (most recent call last)" in result.stderr
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {"failed": [], "formats": {}, "chunks": 0}
    failed = report["failed"]
    indexed = sum(stats["indexed"] for stats in report["formats"].values())
    total = len(sample) + len(broken)
    print(f"\nfiles {total}   indexed {indexed}   failed {len(failed)}   "
          f"indexed {indexed / max(total, 1):.1%}   chunks {report['chunks']}")
    print(f"rag ingest: exit code {result.returncode}, traceback on stderr: {'yes' if traceback else 'no'}, "
          f"{seconds:.1f} s ({total / seconds:.2f} files/s)")
    print(f"\n{'format':10} {'seen':>5} {'indexed':>8} {'failed':>7}")
    for fmt, stats in sorted(report["formats"].items()):
        print(f"{fmt:10} {stats['seen']:5} {stats['indexed']:8} {stats['failed']:7}")
    damaged_names = {name for name in origin if "-damaged-" in name}
    damaged_failed = sum(failure["path"] in damaged_names for failure in failed)
    if broken:
        print(f"damaged copies: {len(broken)}, indexed {len(broken) - damaged_failed}, failed {damaged_failed}")
    for item in report.get("recovered", []):
        print(f"recovered {item['path']} ({origin.get(item['path'], '?')}): {item['note']}")
    for failure in failed:
        print(f"failed {failure['path']} ({origin.get(failure['path'], '?')}): {failure['error']}")
    if result.returncode or traceback:
        print(f"\nstderr (last 3000 characters):\n{result.stderr[-3000:]}")
    sys.exit(1 if traceback else 0)


if __name__ == "__main__":
    main()
