"""External converters (LibreOffice, pandoc, Tesseract) run as subprocesses under the file's time budget."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from ingest.errors import CorruptFile, FileRejected
from ingest.loaders.limits import seconds_left, timed_out


class MissingTool(FileRejected):
    pass


def run_tool(command: list[str], what: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    """Run ``command``; its stdout, or a FileRejected naming ``what`` failed and why."""
    try:
        result = subprocess.run(
            command, input=stdin, capture_output=True, timeout=seconds_left(), env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise timed_out() from exc
    except FileNotFoundError as exc:
        raise MissingTool(f"{what} is not installed ({command[0]}); run `make system-deps`") from exc
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CorruptFile(f"{what} could not read the file: {detail[-1][:200] if detail else f'exit {result.returncode}'}")
    return result.stdout


# -- LibreOffice ------------------------------------------------------------------------------
_SOFFICE_LOCK = threading.Lock()  # one profile folder per process; two soffice runs on it would clash


@lru_cache(maxsize=1)
def soffice_path() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


@lru_cache(maxsize=1)
def _soffice_profile() -> Path:
    # A fixed per-process profile: creating one costs seconds, so it is made once and reused.
    return Path(tempfile.gettempdir()) / f"rag-soffice-profile-{os.getpid()}"


def soffice_convert(data: bytes, suffix: str, target: str) -> bytes:
    """Convert a document (given by its bytes and original suffix) with LibreOffice headless to ``target``."""
    binary = soffice_path()
    if binary is None:
        raise MissingTool("LibreOffice is not installed (soffice); run `make system-deps`")
    with _SOFFICE_LOCK, tempfile.TemporaryDirectory(prefix="rag-soffice-") as folder:
        source = Path(folder) / f"input{suffix}"
        source.write_bytes(data)
        out_dir = Path(folder) / "out"
        run_tool(
            [binary, f"-env:UserInstallation={_soffice_profile().as_uri()}", "--headless", "--norestore",
             "--nolockcheck", "--nodefault", "--convert-to", target, "--outdir", str(out_dir), str(source)],
            "LibreOffice",
        )
        produced = list(out_dir.glob("*")) if out_dir.exists() else []
        if not produced:
            raise CorruptFile(f"LibreOffice could not convert this {suffix.lstrip('.').upper()} file")
        return produced[0].read_bytes()


# -- pandoc -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def pandoc_path() -> str | None:
    try:
        import pypandoc

        return str(pypandoc.get_pandoc_path())
    except (ImportError, OSError):
        return shutil.which("pandoc")


def pandoc_to_html(data: bytes, source_format: str, suffix: str) -> str:
    binary = pandoc_path()
    if binary is None:
        raise MissingTool("pandoc is not installed (pip install pypandoc-binary)")
    with tempfile.TemporaryDirectory(prefix="rag-pandoc-") as folder:
        source = Path(folder) / f"input{suffix}"
        source.write_bytes(data)  # binary inputs (epub, odt) cannot come through stdin
        html = run_tool([binary, "--from", source_format, "--to", "html", "--wrap=none", str(source)], "pandoc")
    return html.decode("utf-8", "replace")
