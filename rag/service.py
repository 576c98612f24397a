"""The one facade that the CLI, the API, the web UI and the scheduler call."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ingest.discovery import SourceFile, discover
from ingest.loaders import LoadLimits, warm_up_parsers
from ingest.planning import SyncStrategy
from ingest.splitter import Splitter
from rag.config import IngestSettings, Settings
from rag.deletion import KBDeletions
from rag.embed import BUNDLED_EMBEDDERS, EmbeddingRouter
from rag.errors import InvalidInput, OriginalNotKept
from rag.filters import DocumentFilter, check_kbs, fuse_kbs
from rag.folders import FolderPolicy
from rag.gc import EmbeddingSweeper, GCReport, KBStorage, check_quota, kb_storage, remove_stored_upload
from rag.indexing import Indexer, IngestReport, IngestRequest, ProgressCallback
from rag.origins import UPLOAD, OriginNamer, migrate_origins
from rag.retrieve.rerank import Reranker, load_reranker
from rag.retrieve.searcher import Mode, Searcher, SearchOptions
from rag.store.catalog import Catalog, ChunkRow, DocumentInfo, KBInfo, normalize_tags
from rag.store.conversations import (
    AnswerRecord,
    Conversation,
    ConversationStore,
    FeedbackRecord,
    Rating,
    StoredMessage,
)
from rag.store.factory import build_index_backend
from rag.store.jobs import JobStore
from rag.types import Answer, Hit
from rag.uploads import UploadStore, check_batch, safe_relative_name

if TYPE_CHECKING:
    from rag.chat import ChatEvent, ChatOptions
    from rag.llm.base import ChatMessage, ChatModel, GenerationParams

HISTORY_MESSAGES = 20  # earlier messages of a conversation sent with a new question (condensing reads them)

KB_NAME = re.compile(r"^[\w-]{1,64}$")


def validate_kb_name(name: str) -> str:
    if not isinstance(name, str) or not KB_NAME.fullmatch(name) or "\n" in name:
        raise InvalidInput(
            f"invalid knowledge base name {name!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return name


def _stream_size(stream: BinaryIO) -> int:
    """Bytes left in a seekable stream (an upload's spooled file), its position unchanged."""
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end - here


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
        self.catalog = Catalog(settings.catalog_target)
        emb = settings.embedding
        self.router = EmbeddingRouter(emb.english, emb.chinese, emb.device, emb.batch_size,
                                      emb.cross_language_model)
        self.index = build_index_backend(settings, self.catalog, self.kb_dir, self.router)
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
        self.uploads = UploadStore(settings.home / "uploads")
        self.origins = OriginNamer.create(settings.server.sync_roots, settings.sources, self.uploads.root)
        migrate_origins(self.catalog, self.origins)
        self.embedding_sweeper = EmbeddingSweeper(self.catalog, settings.store.unused_embeddings_kept)

    def kb_dir(self, kb: str) -> Path:
        return self.settings.kbs_dir / kb

    # -- knowledge bases ---------------------------------------------------------------------
    def create_kb(self, name: str, description: str = "") -> KBInfo:
        self.deletions.check(validate_kb_name(name))
        return self.catalog.create_kb(name, description)

    def list_kbs(self) -> list[KBInfo]:
        deleting = self.deletions.names()
        return [kb for kb in self.catalog.list_kbs() if kb.name not in deleting]

    def get_kb(self, name: str) -> KBInfo:
        self.deletions.check(validate_kb_name(name))
        return self.catalog.get_kb(name)

    def delete_kb(self, name: str, wait: bool = True) -> None:
        """Refused from now on (409 ``kb_deleting``), its jobs stopped at their next file (in any process:
        their rows go), its data removed — with ``wait=False`` in the background (rag/deletion.py)."""
        self.get_kb(name)
        self.deletions.start(name, lambda: self._remove_kb(name), wait=wait)

    @cached_property
    def deletions(self) -> KBDeletions:
        return KBDeletions()

    def _remove_kb(self, name: str) -> None:
        self.job_store.forget_kb(name)
        with self.indexer.writer(name):  # waits for a running job of the KB to stop at its next file
            self.catalog.delete_kb(name)
            self.job_store.forget_kb(name)  # a job queued by another process meanwhile
        self.index.forget(name)
        shutil.rmtree(self.kb_dir(name), ignore_errors=True)
        shutil.rmtree(self.settings.home / "uploads" / name, ignore_errors=True)

    # -- documents ---------------------------------------------------------------------------
    def ingest(self, kb: str, paths: list[Path], progress: ProgressCallback | None = None) -> IngestReport:
        """Add and update (never delete) the files of ``paths``; a folder's files get the origin its sync
        would give them (``sync:FOLDER``), a file given alone that of the folder it lies in."""
        self.get_kb(kb)
        by_origin: dict[str, list[Path]] = {}
        for path in paths:
            folder = path if path.is_dir() else path.parent
            by_origin.setdefault(self.origins.for_folder(kb, folder), []).append(path)
        report = IngestReport(kb=kb)
        for origin, group in by_origin.items():
            try:
                files = discover(group)
            except FileNotFoundError as exc:
                raise InvalidInput(str(exc)) from exc
            report.absorb(self.indexer.ingest(kb, IngestRequest(files, origin), progress=progress))
        return report

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
        request = IngestRequest(files, self.origins.for_folder(kb, folder, root), SyncStrategy.MIRROR, wait=wait)
        report = self.indexer.ingest(kb, request, progress=progress)
        report.failed.extend(skipped)
        if report.deleted or report.updated:
            self.embedding_sweeper.poke()
        return report

    def check_sync_source(self, source: str) -> tuple[Path, Path]:
        """For syncs asked over the API or the UI: the resolved folder and its sync root, or a refusal."""
        return self.folders.check(source)

    def ingest_files(self, kb: str, files: list[tuple[Path, str]],
                     progress: ProgressCallback | None = None, origin: str = UPLOAD,
                     uploaded_by: str | None = None, tags: list[str] | None = None) -> IngestReport:
        """Ingest files each named by the given ``source`` (e.g. an upload's sanitised name).

        ``tags`` (None: keep each document's current tags) are set on every file's document."""
        self.get_kb(kb)
        request = IngestRequest([SourceFile(path, source) for path, source in files], origin,
                                uploaded_by=uploaded_by, tags=None if tags is None else normalize_tags(tags))
        return self.indexer.ingest(kb, request, progress=progress)

    def upload(self, kb: str, files: list[tuple[str, BinaryIO]], uploaded_by: str | None = None,
               tags: list[str] | None = None, progress: ProgressCallback | None = None) -> IngestReport:
        """Store files under RAG_HOME/uploads/KB by their sanitised names (the originals are kept) and ingest
        them as documents of origin ``upload`` (the web UI's uploads; REST stores first, then queues a job)."""
        stored = self.store_uploads(kb, files)
        return self.ingest_files(kb, stored, progress, uploaded_by=uploaded_by, tags=tags)

    def store_uploads(self, kb: str, files: list[tuple[str, BinaryIO]],
                      size: int | None = None) -> list[tuple[Path, str]]:
        """Check the names and the KB's quota, then store the files (all or none): (path, source) pairs."""
        self.get_kb(kb)
        names = [safe_relative_name(name) for name, _ in files]
        check_batch(names)
        if self.settings.server.max_kb_mb is not None:
            incoming = size if size is not None else sum(_stream_size(stream) for _, stream in files)
            self.check_quota(kb, incoming)
        paths = self.uploads.save_all(kb, [(name, stream) for name, (_, stream) in zip(names, files, strict=True)])
        return list(zip(paths, names, strict=True))

    def kb_storage(self, kb: str) -> KBStorage:
        self.get_kb(kb)
        return kb_storage(self.catalog, kb, self.uploads.kb_folder(kb), self.kb_dir(kb))

    def check_quota(self, kb: str, incoming_bytes: int) -> None:
        """PayloadTooLarge (413) when ``incoming_bytes`` more would take the KB past ``server.max_kb_mb``."""
        if self.settings.server.max_kb_mb is not None:
            check_quota(self.kb_storage(kb), incoming_bytes, self.settings.server.max_kb_mb, kb)

    def collect_garbage(self, vacuum: bool = False) -> GCReport:
        """``rag gc``: unused embeddings, old job records, stray upload files, indexes with many deleted
        rows; with ``vacuum`` the catalog file is rewritten to shrink (rag/gc.py)."""
        from rag.gc import collect

        return collect(self.catalog, self.settings, index=self.index, vacuum=vacuum)

    def list_documents(self, kb: str, origin: str | None = None) -> list[DocumentInfo]:
        self.get_kb(kb)
        return self.catalog.documents(kb, origin)

    def set_tags(self, kb: str, doc_id: str, tags: list[str]) -> DocumentInfo:
        self.get_kb(kb)
        return self.catalog.set_tags(kb, doc_id, normalize_tags(tags))

    def get_document(self, kb: str, doc_id: str) -> DocumentInfo:
        self.get_kb(kb)
        return self.catalog.document(kb, doc_id)

    def document_chunks(self, kb: str, doc_id: str) -> list[ChunkRow]:
        self.get_document(kb, doc_id)
        return self.catalog.document_chunks(kb, doc_id)

    def document_original(self, kb: str, doc_id: str) -> Path:
        """The stored original of an uploaded document; files ingested from server paths are not served."""
        doc = self.get_document(kb, doc_id)
        folder = (self.settings.home / "uploads" / kb).resolve()
        path = Path(doc.path).resolve() if doc.path else None
        if path is None or not path.is_relative_to(folder) or not path.is_file():
            raise OriginalNotKept(f"the original file of document '{doc_id}' is not kept by the server "
                                  "(only uploaded files are); its chunks are at .../chunks")
        return path

    def delete_document(self, kb: str, doc_id: str) -> None:
        """Gone from search when this returns; an uploaded document's stored original is removed too."""
        doc = self.get_document(kb, doc_id)
        self.indexer.delete_documents(kb, [doc_id])
        if doc.origin == UPLOAD:
            remove_stored_upload(self.uploads.kb_folder(kb), doc.path)
        self.embedding_sweeper.poke()

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
        filter: DocumentFilter | None = None,
    ) -> list[Hit]:
        """``filter``: only documents it matches are searched, inside the index search (rag/filters.py)."""
        self.get_kb(kb)
        if not query or not query.strip():
            raise InvalidInput("query must not be empty")
        top_k = top_k or self.settings.retrieval.top_k
        if not 1 <= top_k <= 1000:
            raise InvalidInput("top_k must be between 1 and 1000")
        doc_ids = None if filter is None or filter.empty else filter.doc_ids(self.catalog.documents(kb))
        if doc_ids is not None and not doc_ids:
            return []
        options = SearchOptions(top_k=top_k, mode=mode, bm25_weight=bm25_weight, dense_weight=dense_weight,
                                doc_ids=doc_ids)
        return self.searcher.search(kb, query, options)

    def search_many(
        self,
        kbs: list[str],
        query: str,
        top_k: int | None = None,
        mode: Mode = "hybrid",
        bm25_weight: float | None = None,
        dense_weight: float | None = None,
        filter: DocumentFilter | None = None,
    ) -> list[Hit]:
        """One ranking over several KBs: each searched for ``top_k``, fused by RRF; each hit names its ``kb``."""
        kbs = check_kbs(kbs)
        for kb in kbs:
            self.get_kb(kb)
        top_k = top_k or self.settings.retrieval.top_k
        results = {kb: self.search(kb, query, top_k, mode, bm25_weight, dense_weight, filter) for kb in kbs}
        return fuse_kbs(results, top_k, self.settings.retrieval.rrf_k)

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
            return create_chat_model(self.settings.llm, self.settings.home, self.settings.models_dir)

    def answer(self, kb: str | list[str], messages: list[ChatMessage], options: ChatOptions | None = None) -> Answer:
        """A grounded answer from ``kb`` (a list: several KBs, their rankings fused); ``options.filter`` narrows it."""
        from rag.chat import answer_question

        return answer_question(self, self._answer_kbs(kb), messages, options)

    def stream_answer(self, kb: str | list[str], messages: list[ChatMessage],
                      options: ChatOptions | None = None) -> Iterator[ChatEvent]:
        from rag.chat import stream_answer

        return stream_answer(self, self._answer_kbs(kb), messages, options)

    def _answer_kbs(self, kb: str | list[str]) -> str | list[str]:
        """One KB stays a name (its answers are as before); several are checked and fused."""
        if isinstance(kb, str):
            return kb
        kbs = check_kbs(kb)
        for name in kbs:
            self.get_kb(name)
        return kbs[0] if len(kbs) == 1 else kbs

    def stream_llm(self, messages: list[ChatMessage], params: GenerationParams) -> Iterator[ChatEvent]:
        """The chat model alone, without retrieval (the /v1 endpoint's non-KB models), as chat events.

        The model is loaded before the generator is returned, so a missing model fails here, not mid-stream.
        """
        from rag.chat import ChatEvent

        model = self.chat_model

        def events() -> Iterator[ChatEvent]:
            yield ChatEvent("sources")
            for piece in model.stream(messages, params):
                yield ChatEvent("token", text=piece)
            yield ChatEvent("done")

        return events()

    def generation_defaults(self) -> GenerationParams:
        """The configured generation parameters (llm.*), which a request may override."""
        from rag.chat import generation_params

        return generation_params(self, None)

    def chat_options(self, **fields: Any) -> ChatOptions:
        """Options for ``answer``/``stream_answer`` (rag.chat.ChatOptions), so front doors need not import rag.chat."""
        from rag.chat import ChatOptions

        return ChatOptions(**fields)

    def embedding_models(self) -> list[str]:
        """The embedding models /v1/embeddings may use: the configured ones and the bundled ones."""
        emb = self.settings.embedding
        return sorted({emb.english, emb.chinese, *BUNDLED_EMBEDDERS})

    def embed_texts(self, model: str, texts: list[str]) -> np.ndarray:
        return np.asarray(self.router.embedder(model).embed_documents(texts), dtype="<f4")

    # -- conversations (owner None: an admin, who sees everyone's) -----------------------------
    @cached_property
    def conversations(self) -> ConversationStore:
        return ConversationStore(self.catalog)

    def create_conversation(self, owner: str, kbs: list[str], title: str = "") -> Conversation:
        """A conversation asks its KBs (several: their rankings fused into one)."""
        kbs = check_kbs(kbs)
        for kb in kbs:
            self.get_kb(kb)
        return self.conversations.create(owner, kbs, title.strip())

    def list_conversations(self, owner: str | None) -> list[Conversation]:
        return self.conversations.list(owner)

    def get_conversation(self, conversation_id: str, owner: str | None) -> tuple[Conversation, list[StoredMessage]]:
        conversation = self.conversations.get(conversation_id, owner)
        return conversation, self.conversations.messages(conversation.id)

    def rename_conversation(self, conversation_id: str, owner: str | None, title: str) -> Conversation:
        self.conversations.get(conversation_id, owner)
        self.conversations.update(conversation_id, title=title.strip())
        return self.conversations.get(conversation_id, owner)

    def delete_conversation(self, conversation_id: str, owner: str | None) -> None:
        self.conversations.get(conversation_id, owner)
        self.conversations.delete(conversation_id)

    def _conversation_turn(self, conversation_id: str, owner: str | None,
                           content: str) -> tuple[Conversation, list[ChatMessage]]:
        conversation = self.conversations.get(conversation_id, owner)
        for kb in conversation.kbs:
            self.get_kb(kb)
        history: list[ChatMessage] = [{"role": m.role, "content": m.content} for m in self.conversations.messages(conversation.id)]
        return conversation, [*history[-HISTORY_MESSAGES:], {"role": "user", "content": content}]

    def _record_answer(self, conversation: Conversation, question: str, answer: Answer,
                       options: ChatOptions | None, kbs: list[str] | None = None) -> int:
        kbs = kbs or conversation.kbs
        settings: dict[str, Any] = {}
        if options:
            settings = {"top_k": options.top_k, "params": asdict(options.params) if options.params else None}
            if options.filter is not None:
                settings["filter"] = options.filter.to_json()
        if len(kbs) > 1:
            settings["kbs"] = kbs
        # The answer is filed under the first KB (feedback export --kb); citations name their own KB.
        record = AnswerRecord(kbs[0], answer.answer, answer.grounded,
                              [c.to_json() for c in answer.citations], list(answer.evidence), settings,
                              # A quoted fallback delivered none of the model's text: a rating is of the quote.
                              model_text="" if answer.fallback else answer.generated)
        return self.conversations.add_exchange(conversation.id, question, record, title=question.strip()[:80])

    def record_exchange(self, conversation_id: str, owner: str | None, question: str, answer: Answer,
                        kbs: list[str], options: ChatOptions | None = None) -> int:
        """Store a question answered elsewhere (the stateless /v1 endpoint) in ``owner``'s conversation."""
        conversation = self.conversations.get(conversation_id, owner)
        return self._record_answer(conversation, question, answer, options, kbs)

    def ask_in_conversation(self, conversation_id: str, owner: str | None, content: str,
                            options: ChatOptions | None = None) -> tuple[Answer, int]:
        """Answer ``content`` with the conversation's history; the exchange is stored. Returns (answer, its id)."""
        conversation, messages = self._conversation_turn(conversation_id, owner, content)
        answer = self.answer(conversation.kbs, messages, options)
        return answer, self._record_answer(conversation, content, answer, options)

    def stream_in_conversation(self, conversation_id: str, owner: str | None, content: str,
                               options: ChatOptions | None = None) -> Iterator[tuple[ChatEvent, int | None]]:
        """The chat stream's events; the final one comes with the stored answer's message id."""
        conversation, messages = self._conversation_turn(conversation_id, owner, content)
        for event in self.stream_answer(conversation.kbs, messages, options):
            if event.kind == "done" and event.answer is not None:
                yield event, self._record_answer(conversation, content, event.answer, options)
            else:
                yield event, None

    def rate_answer(self, conversation_id: str, owner: str | None, message_id: int, rating: Rating,
                    comment: str = "", expected: str | None = None) -> FeedbackRecord:
        conversation = self.conversations.get(conversation_id, owner)
        return self.conversations.set_feedback(conversation, message_id, rating, comment, expected)

    def feedback(self, kb: str | None = None, rating: Rating | None = None) -> list[FeedbackRecord]:
        if kb is not None:
            self.get_kb(kb)
        return self.conversations.feedback(kb, rating)

    def answer_ratings(self, message_ids: list[int]) -> dict[int, str]:
        """The rating ("up" | "down") of each of these answers that has one."""
        return self.conversations.feedback_of(message_ids)

    # -- jobs ----------------------------------------------------------------------------------
    def list_jobs(self, kb: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        """The newest jobs (of ``kb``, or of every KB), newest first."""
        return [job.to_json() for job in self.job_store.list(kb, limit)]

    @cached_property
    def job_store(self) -> JobStore:
        return JobStore(self.catalog)
