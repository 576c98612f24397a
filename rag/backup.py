"""Backups of a knowledge base: ``rag kb export NAME FILE`` and ``rag kb import FILE [--as NAME]``.

The archive is a gzipped tar (PAX headers, so any Unicode file name round-trips) holding everything the
catalog knows of the KB — its description, the settings its chunks were made with, every document row
(origin, tags, hashes), the chunks visible at its committed generation with their BM25 tokens, and the
cached vectors of their texts — plus the stored originals of uploaded documents. Indexes are not in it:
an import writes the rows as the new KB's generation 1, and the first writer rebuilds the index from
them (the catalog is the source of truth), so an archive moves between index backends unchanged.

Layout (format ``rag-kb-export``, version 1)::

    manifest.json        {"format", "version", "kb", "description", "exported_at", "settings", "documents", "chunks"}
    documents.jsonl      one catalog row per line
    chunks.jsonl         one chunk per line (doc_id, ordinal, text, heading, page, language, text_hash, tokens)
    embeddings.jsonl     {"model", "file", "hashes"} per embedding model; vectors in embeddings/N.npy (float32)
    files/<name>         the stored original of each uploaded document, by its name in the KB's uploads folder
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from rag.errors import InvalidInput

if TYPE_CHECKING:
    from rag.service import RagService

FORMAT = "rag-kb-export"
VERSION = 1
MAX_MEMBER_BYTES = 4 * 1024**3


@dataclass(frozen=True, slots=True)
class BackupReport:
    kb: str
    file: str
    documents: int
    chunks: int
    files: int
    embeddings: int
    bytes: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"kb": self.kb, "file": self.file, "documents": self.documents, "chunks": self.chunks,
                "files": self.files, "embeddings": self.embeddings, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = int(path.stat().st_mtime)
    info.mode = 0o644
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def export_kb(service: RagService, kb: str, target: Path) -> BackupReport:
    """Write ``kb`` to ``target`` (written under a temporary name, then renamed: never half an archive)."""
    started = time.perf_counter()
    info = service.get_kb(kb)
    catalog = service.catalog
    target = target.expanduser()
    if target.is_dir():
        raise InvalidInput(f"export target is a folder: {target}; give a file name such as {kb}.tar.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The KB's writer lock: the rows and the files come from one committed state.
    with service.indexer.writer(kb):
        documents = catalog.document_rows(kb)
        uploads = service.uploads.kb_folder(kb).resolve()
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".export-", suffix=".tmp")
        os.close(handle)
        try:
            chunk_count, files, vectors = _write_archive(service, kb, info.description, documents, uploads,
                                                         Path(temporary))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return BackupReport(kb, str(target), len(documents), chunk_count, files, vectors, target.stat().st_size,
                        time.perf_counter() - started)


def _write_archive(service: RagService, kb: str, description: str, documents: list[dict[str, Any]],
                   uploads: Path, path: Path) -> tuple[int, int, int]:
    catalog = service.catalog
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar, tempfile.TemporaryDirectory() as scratch:
        chunks_file = Path(scratch) / "chunks.jsonl"
        hashes: dict[str, None] = {}
        chunk_count = 0
        with chunks_file.open("w", encoding="utf-8") as out:
            for chunk in catalog.chunk_rows(kb):
                out.write(json.dumps(chunk, ensure_ascii=False) + "\n")
                hashes.setdefault(chunk["text_hash"], None)
                chunk_count += 1
        _add_file(tar, "chunks.jsonl", chunks_file)
        by_model: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        for model, text_hash, vector in catalog.embedding_rows(list(hashes)):
            names, rows = by_model.setdefault(model, ([], []))
            names.append(text_hash)
            rows.append(np.frombuffer(vector, dtype=np.float32))
        index_lines = []
        vectors = 0
        for number, (model, (names, rows)) in enumerate(sorted(by_model.items())):
            buffer = io.BytesIO()
            np.save(buffer, np.stack(rows).astype(np.float32), allow_pickle=False)
            _add_bytes(tar, f"embeddings/{number}.npy", buffer.getvalue())
            index_lines.append(json.dumps({"model": model, "file": f"embeddings/{number}.npy", "hashes": names}))
            vectors += len(names)
        _add_bytes(tar, "embeddings.jsonl", "".join(line + "\n" for line in index_lines).encode("utf-8"))
        files = 0
        for doc in documents:
            name = _stored_name(doc.get("path"), uploads)
            if name is not None:
                _add_file(tar, f"files/{name}", uploads / name)
                files += 1
        # Written after the files: each row names its stored original's member ("stored_file").
        _add_bytes(tar, "documents.jsonl", "".join(
            json.dumps({**doc, "stored_file": _stored_name(doc.get("path"), uploads)}, ensure_ascii=False) + "\n"
            for doc in documents).encode("utf-8"))
        settings = service.settings
        manifest = {
            "format": FORMAT, "version": VERSION, "kb": kb, "description": description, "exported_at": time.time(),
            "documents": len(documents), "chunks": chunk_count, "files": files,
            "settings": {
                "embedding": {"english": settings.embedding.english, "chinese": settings.embedding.chinese},
                "chunking": settings.chunking.model_dump(mode="json"),
            },
        }
        _add_bytes(tar, "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8"))
    return chunk_count, files, vectors


def _stored_name(path: str | None, uploads: Path) -> str | None:
    """The document's name inside the KB's uploads folder, if its original is stored there."""
    if not path:
        return None
    file = Path(path).resolve()
    if not file.is_relative_to(uploads) or not file.is_file():
        return None
    return file.relative_to(uploads).as_posix()


# -- import ---------------------------------------------------------------------------------------


def import_kb(service: RagService, source: Path, name: str | None = None) -> BackupReport:
    """Restore an archive as a new KB (``name``, or the exported KB's name), its index rebuilt from the rows."""
    started = time.perf_counter()
    source = source.expanduser()
    if not source.is_file():
        raise InvalidInput(f"no such archive: {source}")
    with _open_archive(source) as tar:
        members = {member.name: member for member in tar.getmembers()}
        manifest = _read_json(tar, members, "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InvalidInput(f"{source} is not a knowledge-base export (no {FORMAT} manifest)")
        if manifest.get("version") != VERSION:
            raise InvalidInput(f"{source} is export version {manifest.get('version')}; this version reads {VERSION}")
        kb = name or str(manifest.get("kb") or "")
        service.create_kb(kb, str(manifest.get("description") or ""))  # validates the name; KBExists → 409
        try:
            report = _restore(service, kb, tar, members)
        except BaseException:
            service.delete_kb(kb)
            shutil.rmtree(service.uploads.kb_folder(kb), ignore_errors=True)
            raise
    return BackupReport(kb, str(source), report[0], report[1], report[2], report[3], source.stat().st_size,
                        time.perf_counter() - started)


def _open_archive(source: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(source, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{source} is not a knowledge-base export ({exc})") from None


def _restore(service: RagService, kb: str, tar: tarfile.TarFile,
             members: dict[str, tarfile.TarInfo]) -> tuple[int, int, int, int]:
    uploads = service.uploads.kb_folder(kb)
    files = 0
    for member in members.values():
        if not member.name.startswith("files/") or not member.isfile():
            continue
        relative = _safe_member_path(member.name[len("files/"):])
        target = uploads / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with _extract(tar, member) as data, target.open("wb") as out:
            while block := data.read(1024 * 1024):
                out.write(block)
        files += 1
    documents = list(_read_jsonl(tar, members, "documents.jsonl"))
    for doc in documents:
        stored = doc.get("stored_file")
        if isinstance(stored, str) and (uploads / _safe_member_path(stored)).is_file():
            doc["path"] = str((uploads / _safe_member_path(stored)).resolve())
    vectors = 0
    for entry in _read_jsonl(tar, members, "embeddings.jsonl"):
        with _extract(tar, members[entry["file"]]) as data:
            matrix = np.load(io.BytesIO(data.read()), allow_pickle=False)
        service.catalog.store_embeddings(entry["model"], dict(zip(entry["hashes"], matrix, strict=True)))
        vectors += len(entry["hashes"])
    chunks = service.catalog.restore_rows(kb, documents, _read_jsonl(tar, members, "chunks.jsonl"))
    with service.indexer.writer(kb):
        pass  # opening the writer finds no index for generation 1 and rebuilds it from the catalog
    return len(documents), chunks, files, vectors


def _safe_member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in {"", ".", ".."} for part in path.parts):
        raise InvalidInput(f"archive member name is not a safe relative path: {name!r}")
    return path


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    if not member.isfile() or member.size > MAX_MEMBER_BYTES:
        raise InvalidInput(f"archive member {member.name!r} is not a regular file of a sane size")
    handle = tar.extractfile(member)
    if handle is None:
        raise InvalidInput(f"archive member {member.name!r} cannot be read")
    return handle


def _read_json(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> Any:
    if name not in members:
        raise InvalidInput(f"the archive has no {name}: not a knowledge-base export")
    with _extract(tar, members[name]) as data:
        try:
            return json.loads(data.read().decode("utf-8"))
        except ValueError as exc:
            raise InvalidInput(f"the archive's {name} is not valid JSON: {exc}") from None


def _read_jsonl(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> Iterator[dict[str, Any]]:
    if name not in members:
        raise InvalidInput(f"the archive has no {name}: not a knowledge-base export")
    with _extract(tar, members[name]) as data:
        for number, line in enumerate(io.TextIOWrapper(data, encoding="utf-8"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{name} line {number} is not valid JSON: {exc}") from None
            if not isinstance(row, dict):
                raise InvalidInput(f"{name} line {number} is not an object")
            yield row
