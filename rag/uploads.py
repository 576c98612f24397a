"""Uploaded files are stored under ``RAG_HOME/uploads/<kb>/`` by a sanitised relative name.

The client's filename is untrusted: ``../../x``, absolute paths, drive letters, control characters
and hidden names are all turned into a plain relative path that cannot leave the KB's folder.
A name part over 255 bytes (the file system's limit) and a name that collides with an earlier upload's
file or folder (``a.md`` then ``a.md/b.md``) are refused before anything is written; the files of one
upload are staged first and moved into place together, so a refused upload leaves none of them behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

from rag.errors import InvalidInput

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_MAX_PART_BYTES = 255  # NAME_MAX of ext4, XFS, btrfs, APFS
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
        if len(part.encode("utf-8")) > _MAX_PART_BYTES:
            raise InvalidInput(f"upload file name is too long: each part of a name may be at most "
                               f"{_MAX_PART_BYTES} bytes in UTF-8 ({len(part.encode('utf-8'))} given)")
        parts.append(part)
    if not parts:
        raise InvalidInput(f"upload has no usable file name: {filename!r}")
    return "/".join(parts[-_MAX_DEPTH:])


def check_batch(names: list[str]) -> None:
    """Refuse one upload's names that repeat or that need a file to also be a folder (``a.md``, ``a.md/b``)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"file '{name}' is given twice in one upload")
        seen.add(name)
    for name in names:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in seen:
                raise InvalidInput(f"file '{name}' would put a file inside the uploaded file "
                                   f"'{'/'.join(parts[:depth])}'")


class UploadStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def kb_folder(self, kb: str) -> Path:
        return self.root / kb

    def _target(self, kb: str, name: str) -> Path:
        folder = self.kb_folder(kb).resolve()
        target = (folder / name).resolve()
        if not target.is_relative_to(folder):  # defence in depth: safe_relative_name already prevents this
            raise InvalidInput(f"upload name escapes the knowledge base folder: {name!r}")
        # An earlier upload may hold a file where this name needs a folder, or a folder where it needs a file.
        for parent in target.relative_to(folder).parents:
            if parent != Path(".") and (folder / parent).is_file():
                raise InvalidInput(f"file '{name}' conflicts with the uploaded file '{parent.as_posix()}'")
        if target.is_dir():
            raise InvalidInput(f"file '{name}' conflicts with the uploaded folder of the same name")
        return target

    def save_all(self, kb: str, files: list[tuple[str, BinaryIO]]) -> list[Path]:
        """Write every file under its name, or none: all are checked and staged before any is moved in place."""
        targets = [self._target(kb, name) for name, _ in files]
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        staged: list[Path] = []
        try:
            for _, content in files:
                handle, temporary = tempfile.mkstemp(dir=staging, prefix="upload-")
                staged.append(Path(temporary))
                with os.fdopen(handle, "wb") as out:
                    shutil.copyfileobj(content, out, length=1024 * 1024)
            for temporary, target in zip(staged, targets, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, target)  # same file system: atomic, a reader never sees half a file
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
                raise InvalidInput(f"an upload name cannot be stored: {exc.strerror}") from None
            raise
        finally:
            for temporary in staged:
                temporary.unlink(missing_ok=True)
        return targets

    def save(self, kb: str, name: str, content: BinaryIO) -> Path:
        """Write ``content`` to the KB's folder under ``name`` (atomically: a reader never sees half a file)."""
        return self.save_all(kb, [(name, content)])[0]

    def remove_kb(self, kb: str) -> None:
        shutil.rmtree(self.kb_folder(kb), ignore_errors=True)
