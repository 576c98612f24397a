"""Uploaded files are stored under ``RAG_HOME/uploads/<kb>/`` by a sanitised relative name.

The client's filename is untrusted: ``../../x``, absolute paths, drive letters, control characters
and hidden names are all turned into a plain relative path that cannot leave the KB's folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

from rag.errors import InvalidInput

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_MAX_PART = 200
_MAX_DEPTH = 8


def safe_relative_name(filename: str | None) -> str:
    """A relative POSIX path made of the filename's harmless parts (``../../etc/x.md`` → ``etc/x.md``)."""
    text = unicodedata.normalize("NFC", filename or "").replace("\\", "/")
    parts = []
    for raw in text.split("/"):
        part = _UNSAFE_CHARS.sub("_", raw).strip().rstrip(".")
        if part in {"", ".", ".."}:
            continue
        if part.startswith("."):
            part = "_" + part[1:]  # hidden names would be skipped by folder discovery
        parts.append(part[:_MAX_PART])
    if not parts:
        raise InvalidInput(f"upload has no usable file name: {filename!r}")
    return "/".join(parts[-_MAX_DEPTH:])


class UploadStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def kb_folder(self, kb: str) -> Path:
        return self.root / kb

    def save(self, kb: str, name: str, content: BinaryIO) -> Path:
        """Write ``content`` to the KB's folder under ``name`` (atomically: a reader never sees half a file)."""
        folder = self.kb_folder(kb).resolve()
        target = (folder / name).resolve()
        if not target.is_relative_to(folder):  # defence in depth: safe_relative_name already prevents this
            raise InvalidInput(f"upload name escapes the knowledge base folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                shutil.copyfileobj(content, out, length=1024 * 1024)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def remove_kb(self, kb: str) -> None:
        shutil.rmtree(self.kb_folder(kb), ignore_errors=True)
