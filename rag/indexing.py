"""Files → parsed → chunked → embedded → staged and committed into a KB, in proportion to what changed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ingest.discovery import SourceFile
from ingest.errors import FileRejected
from ingest.loaders import LoadLimits, format_of, load_document
from ingest.models import Chunk, ParsedDocument, content_hash
from ingest.planning import UPLOAD, KnownDocument, SyncPlan, SyncStrategy, plan
from ingest.splitter import Splitter
from rag.embed import EmbeddingRouter
from rag.retrieve.tokenize import default_tokenizer
from rag.store.backend import IndexBackend, IndexWriter
from rag.store.catalog import Catalog, StagedDocument
from rag.types import IndexChunk

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What one ingest or sync is asked to do; the strategy and the origin scope its plan (ingest/planning.py)."""

    files: list[SourceFile]
    origin: str = UPLOAD
    strategy: SyncStrategy = SyncStrategy.UPSERTS
    uploaded_by: str | None = None  # the uploading key's label
    tags: tuple[str, ...] | None = None  # set on the files' documents; None keeps the current tags
    # Text callers already hold (the evaluator), by source: such files are not read and need not exist.
    preparsed: Mapping[str, ParsedDocument] = field(default_factory=lambda: MappingProxyType({}))
    wait: bool = True  # False: a KB being written by someone else raises WriterBusy instead of waiting


@dataclass(slots=True)
class FormatStats:
    seen: int = 0
    indexed: int = 0
    failed: int = 0


@dataclass(slots=True)
class IngestReport:
    kb: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    # Indexed, but only after reading a misnamed or damaged file another way: {"path", "note"}.
    recovered: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    formats: dict[str, FormatStats] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data

    def absorb(self, other: IngestReport) -> None:
        """Add ``other`` (an ingest of the same KB from another origin) to this report."""
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.failed.extend(other.failed)
        self.recovered.extend(other.recovered)
        self.chunks += other.chunks
        self.seconds += other.seconds
        for fmt, stats in other.formats.items():
            mine = self.formats.setdefault(fmt, FormatStats())
            mine.seen, mine.indexed, mine.failed = (mine.seen + stats.seen, mine.indexed + stats.indexed,
                                                    mine.failed + stats.failed)


@dataclass(slots=True)
class _Pending:
    """A parsed document waiting for its chunks' embeddings."""

    staged: StagedDocument
    chunks: list[Chunk]
    is_new: bool


@dataclass(slots=True)
class _Parsed:
    """What parsing one file gave: chunks, a rejection reason, or "unchanged since last time"."""

    file: SourceFile
    fmt: str
    digest: str | None = None
    size: int = 0
    document: ParsedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None
    unchanged: bool = False


# Files parsed ahead of the one being staged. Parsing runs in one background thread while the
# embedder (whose work happens in torch, outside the GIL) handles the previous batch. At most
# PARSE_AHEAD files and, beyond the first, PARSE_AHEAD_BYTES of them (by file size) are in flight, so
# 16 files of 20 MB are not all held parsed at once.
PARSE_AHEAD = 16
PARSE_AHEAD_BYTES = 64 * 1024 * 1024


def _file_size(file: SourceFile) -> int:
    try:
        return file.path.stat().st_size
    except OSError:
        return 0  # reported by the parse itself


class Indexer:
    def __init__(
        self,
        catalog: Catalog,
        router: EmbeddingRouter,
        splitter: Splitter,
        backend: IndexBackend,
        max_file_bytes: int,
        commit_seconds: float = 30.0,
        embed_batch_chunks: int = 256,
        load_limits: LoadLimits | None = None,
    ) -> None:
        self.catalog = catalog
        self.router = router
        self.splitter = splitter
        self.backend = backend
        self.max_file_bytes = max_file_bytes
        self.commit_seconds = commit_seconds
        self.embed_batch_chunks = embed_batch_chunks
        self.load_limits = load_limits or LoadLimits()

    def writer(self, kb: str, wait: bool = True) -> IndexWriter:
        return self.backend.writer(kb, wait=wait)

    def ingest(self, kb: str, request: IngestRequest, progress: ProgressCallback | None = None) -> IngestReport:
        """Add new files, re-index changed ones, skip unchanged, all within ``request.origin``; with the
        ``mirror`` strategy also delete that origin's documents whose files are not in the request."""
        started = time.perf_counter()
        report = IngestReport(kb=kb)
        with self.writer(kb, wait=request.wait) as writer:
            known = [KnownDocument(doc.doc_id, doc.source, doc.origin, doc.content_hash, doc.status == "indexed")
                     for doc in self.catalog.documents(kb)]
            work = plan(request.origin, request.strategy, request.files, known)
            for refusal in work.refused:
                report.failed.append({"path": refusal.file.source, "error": refusal.reason})
            files = work.files
            parsed = request.preparsed
            pending: list[_Pending] = []
            last_commit = time.monotonic()
            for done, result in enumerate(self._parse_ahead(files, work, parsed), start=1):
                item = self._account(result, work, request, report)
                if item is not None:
                    pending.append(item)
                if sum(len(p.chunks) for p in pending) >= self.embed_batch_chunks:
                    self._stage(writer, pending, report)
                    pending = []
                if time.monotonic() - last_commit > self.commit_seconds and writer.pending:
                    writer.commit()
                    last_commit = time.monotonic()
                if progress:
                    progress(done, len(files), result.file.source)
            self._stage(writer, pending, report)
            for doc_id in work.delete:
                writer.delete(doc_id)
                report.deleted += 1
            writer.commit()
        report.seconds = time.perf_counter() - started
        return report

    def delete_documents(self, kb: str, doc_ids: list[str]) -> None:
        with self.writer(kb) as writer:
            for doc_id in doc_ids:
                writer.delete(doc_id)
            writer.commit()

    def _parse_ahead(
        self, files: list[SourceFile], work: SyncPlan, parsed: Mapping[str, ParsedDocument]
    ) -> Iterator[_Parsed]:
        """Each file's parse result, in order, with the next few files parsed in the background."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-parse")
        ahead: deque[tuple[Future[_Parsed], int]] = deque()
        in_flight = 0  # bytes of the files in ``ahead``
        remaining = iter(files)
        try:
            while True:
                while (len(ahead) < PARSE_AHEAD and (not ahead or in_flight < PARSE_AHEAD_BYTES)
                       and (file := next(remaining, None)) is not None):
                    size = _file_size(file)
                    ahead.append((pool.submit(self._parse, file, work, parsed), size))
                    in_flight += size
                if not ahead:
                    return
                future, size = ahead.popleft()
                in_flight -= size
                yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _parse(self, file: SourceFile, work: SyncPlan, parsed: Mapping[str, ParsedDocument]) -> _Parsed:
        """Read, hash, parse and chunk one file. Runs in the parse thread: touches no shared state."""
        result = _Parsed(file, format_of(file.path))
        try:
            if file.source in parsed:
                data = "\n".join(s.text for s in parsed[file.source].sections).encode("utf-8")
            else:
                data = self._read(file)
        except FileRejected as exc:
            result.error = exc.reason
            return result
        result.digest, result.size = content_hash(data), len(data)
        if work.action(file, result.digest) == "unchanged":
            result.unchanged = True
            return result
        try:
            result.document = (parsed[file.source] if file.source in parsed
                               else load_document(file.path, file.source, data, self.load_limits))
            result.chunks = self.splitter.split_document(result.document)
        except FileRejected as exc:
            result.error = exc.reason
        return result

    def _account(self, result: _Parsed, work: SyncPlan, request: IngestRequest,
                 report: IngestReport) -> _Pending | None:
        file, fmt = result.file, result.fmt
        stats = report.formats.setdefault(fmt, FormatStats())
        stats.seen += 1
        if result.unchanged:
            report.unchanged += 1
            stats.indexed += 1
            return None
        if result.error is not None or result.document is None:
            return self._failure(file, fmt, result, request, report)
        document, chunks = result.document, result.chunks
        note = "; ".join(document.notes) or None
        if note:
            report.recovered.append({"path": file.source, "note": note})
        staged = StagedDocument(
            doc_id=file.doc_id, source=file.source, path=str(file.path.resolve()), format=document.format,
            content_hash=result.digest, size=result.size, title=document.title, chunk_count=len(chunks),
            note=note, origin=request.origin, uploaded_by=request.uploaded_by, tags=request.tags,
        )
        return _Pending(staged, chunks, work.is_new(file))

    def _read(self, file: SourceFile) -> bytes:
        try:
            size = file.path.stat().st_size
            if size > self.max_file_bytes:
                raise FileRejected(f"file is {size / 1e6:.1f} MB, over the {self.max_file_bytes / 1e6:.0f} MB limit")
            return file.path.read_bytes()
        except OSError as exc:
            raise FileRejected(f"cannot read file: {exc.strerror or exc}") from exc

    def _failure(
        self, file: SourceFile, fmt: str, result: _Parsed, request: IngestRequest, report: IngestReport
    ) -> _Pending:
        reason = result.error or "not parsed"
        report.failed.append({"path": file.source, "error": reason})
        report.formats[fmt].failed += 1
        staged = StagedDocument(
            doc_id=file.doc_id, source=file.source, path=str(file.path), format=fmt, content_hash=result.digest,
            size=result.size, title=None, chunk_count=0, error=reason, origin=request.origin,
            uploaded_by=request.uploaded_by, tags=request.tags,
        )
        return _Pending(staged, [], is_new=False)

    def _stage(self, writer: IndexWriter, pending: list[_Pending], report: IngestReport) -> None:
        items = [(c.language, c.text_hash, c.index_text) for p in pending for c in p.chunks]
        self.router.ensure(self.catalog, items)
        staged = [(item.staged, [IndexChunk(c.ordinal, c.text, c.heading, c.page, c.language, c.text_hash,
                                            default_tokenizer(c.index_text)) for c in item.chunks])
                  for item in pending]
        writer.stage_many(staged)  # one catalog transaction for the batch
        for item, (_, rows) in zip(pending, staged, strict=True):
            if item.staged.failed:
                continue
            report.formats[format_of(Path(item.staged.source))].indexed += 1
            report.chunks += len(rows)
            if item.is_new:
                report.added += 1
            else:
                report.updated += 1
