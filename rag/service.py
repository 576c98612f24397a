"""The one facade that the CLI, the API, the web UI and the scheduler call."""

from __future__ import annotations

import re
import shutil
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.discovery import SourceFile, discover
from ingest.loaders import LoadLimits, warm_up_parsers
from ingest.splitter import Splitter
from rag.config import IngestSettings, Settings
from rag.embed import EmbeddingRouter
from rag.errors import InvalidInput
from rag.folders import FolderPolicy
from rag.indexing import Indexer, IngestReport, ProgressCallback
from rag.retrieve.rerank import Reranker, load_reranker
from rag.retrieve.searcher import Mode, Searcher, SearchOptions
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog, ChunkRow, DocumentInfo, KBInfo
from rag.store.local import LocalBackend
from rag.store.segment import DenseSettings
from rag.types import Hit

if TYPE_CHECKING:
    from rag.llm.base import ChatModel

KB_NAME = re.compile(r"^[\w-]{1,64}$")


def validate_kb_name(name: str) -> str:
    if not isinstance(name, str) or not KB_NAME.fullmatch(name) or "\n" in name:
        raise InvalidInput(
            f"invalid knowledge base name {name!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return name


def load_limits(ingest: IngestSettings) -> LoadLimits:
    mb = 1024 * 1024
    return LoadLimits(
        max_pages=ingest.max_pages, timeout_s=ingest.parse_timeout_s,
        max_uncompressed_bytes=int(ingest.max_uncompressed_mb * mb), max_compression_ratio=ingest.max_compression_ratio,
        max_text_bytes=int(ingest.max_text_mb * mb), max_depth=ingest.max_depth,
        max_archive_members=ingest.max_archive_members, max_parser_memory_bytes=ingest.max_parser_memory_mb * mb,
    )


class RagService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(settings.catalog_path)
        emb = settings.embedding
        self.router = EmbeddingRouter(emb.english, emb.chinese, emb.device, emb.batch_size,
                                      emb.cross_language_model)
        store = settings.store
        self.index = LocalBackend(
            self.catalog, self.kb_dir, self.router,
            BM25Params(settings.retrieval.bm25_method, settings.retrieval.bm25_k1, settings.retrieval.bm25_b),
            DenseSettings(store.dense_index, store.ann_min_rows, store.ivf_nprobe, store.hnsw_ef_search),
            merge_factor=store.merge_factor, background_merge=store.background_merge, device=store.device,
        )
        self.indexer = Indexer(
            self.catalog,
            self.router,
            Splitter(settings.chunking.chunk_tokens, settings.chunking.overlap_tokens,
                     settings.chunking.chunk_tokens_zh, max_chunks=settings.ingest.max_chunks_per_document),
            self.index,
            max_file_bytes=int(settings.server.max_file_mb * 1024 * 1024),
            commit_seconds=settings.ingest.commit_seconds,
            embed_batch_chunks=settings.ingest.embed_batch_chunks,
            load_limits=load_limits(settings.ingest),
        )
        self._chat_model_lock = threading.Lock()
        self.folders = FolderPolicy.create(settings.server.sync_roots, settings.home, settings.config)

    def kb_dir(self, kb: str) -> Path:
        return self.settings.kbs_dir / kb

    # -- knowledge bases ---------------------------------------------------------------------
    def create_kb(self, name: str, description: str = "") -> KBInfo:
        return self.catalog.create_kb(validate_kb_name(name), description)

    def list_kbs(self) -> list[KBInfo]:
        return self.catalog.list_kbs()

    def get_kb(self, name: str) -> KBInfo:
        return self.catalog.get_kb(validate_kb_name(name))

    def delete_kb(self, name: str) -> None:
        self.get_kb(name)
        with self.indexer.writer(name):
            self.catalog.delete_kb(name)
        self.index.forget(name)
        shutil.rmtree(self.kb_dir(name), ignore_errors=True)

    # -- documents ---------------------------------------------------------------------------
    def ingest(self, kb: str, paths: list[Path], progress: ProgressCallback | None = None) -> IngestReport:
        self.get_kb(kb)
        try:
            files = discover(paths)
        except FileNotFoundError as exc:
            raise InvalidInput(str(exc)) from exc
        return self.indexer.ingest(kb, files, progress=progress)

    def sync(self, kb: str, folder: Path, progress: ProgressCallback | None = None,
             wait: bool = True, root: Path | None = None) -> IngestReport:
        """Mirror ``folder``; with ``wait=False`` raise WriterBusy rather than queue behind another writer.

        ``root``: a sync root the files must really lie in (symlinks out of it are skipped and reported).
        RAG_HOME and the config file are skipped by every sync.
        """
        self.get_kb(kb)
        if not folder.is_dir():
            raise InvalidInput(f"sync source is not a folder: {folder}")
        files, skipped = self.folders.split(discover([folder]), root)
        report = self.indexer.ingest(kb, files, mirror=True, progress=progress, wait=wait)
        report.failed.extend(skipped)
        return report

    def check_sync_source(self, source: str) -> tuple[Path, Path]:
        """For syncs asked over the API or the UI: the resolved folder and its sync root, or a refusal."""
        return self.folders.check(source)

    def ingest_files(self, kb: str, files: list[tuple[Path, str]],
                     progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest files each named by the given ``source`` (e.g. an upload's sanitised name)."""
        self.get_kb(kb)
        return self.indexer.ingest(kb, [SourceFile(path, source) for path, source in files], progress=progress)

    def list_documents(self, kb: str) -> list[DocumentInfo]:
        self.get_kb(kb)
        return self.catalog.documents(kb)

    def get_document(self, kb: str, doc_id: str) -> DocumentInfo:
        self.get_kb(kb)
        return self.catalog.document(kb, doc_id)

    def document_chunks(self, kb: str, doc_id: str) -> list[ChunkRow]:
        self.get_document(kb, doc_id)
        return self.catalog.document_chunks(kb, doc_id)

    def delete_document(self, kb: str, doc_id: str) -> None:
        self.get_document(kb, doc_id)
        self.indexer.delete_documents(kb, [doc_id])

    def optimize_kb(self, name: str) -> int:
        """Merge the KB's index segments into one (dropping deleted chunks); returns the segment count."""
        self.get_kb(name)
        return self.index.optimize(name)

    # -- retrieval ---------------------------------------------------------------------------
    @cached_property
    def reranker(self) -> Reranker | None:
        name = self.settings.retrieval.reranker
        return load_reranker(name, self.settings.embedding.device) if name else None

    @cached_property
    def searcher(self) -> Searcher:
        return Searcher(self.index, self.router, self.settings.retrieval, self.reranker)

    def search(
        self,
        kb: str,
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        bm25_weight: float | None = None,
        dense_weight: float | None = None,
    ) -> list[Hit]:
        self.get_kb(kb)
        if not query or not query.strip():
            raise InvalidInput("query must not be empty")
        top_k = top_k or self.settings.retrieval.top_k
        if not 1 <= top_k <= 1000:
            raise InvalidInput("top_k must be between 1 and 1000")
        options = SearchOptions(top_k=top_k, mode=mode, bm25_weight=bm25_weight, dense_weight=dense_weight)
        return self.searcher.search(kb, query, options)

    def warm_up(self) -> None:
        """Load the embedding models and the text parsers now rather than on the first query or file."""
        for name in {self.router.english, self.router.chinese}:
            self.router.embedder(name).embed_query("warm up")
        warm_up_parsers()

    # -- answering ---------------------------------------------------------------------------
    @cached_property
    def chat_model(self) -> ChatModel:
        from rag.llm import create_chat_model

        with self._chat_model_lock:
            return create_chat_model(self.settings.llm, self.settings.home)
