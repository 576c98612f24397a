"""LangChain adapters: a retriever and a vector store over a knowledge base, in-process or over REST.

Install with ``pip install 'rag-assistant[langchain]'``.

    retriever = KnowledgeBaseRetriever.local(kb="handbook", home=".rag", k=4)
    retriever = KnowledgeBaseRetriever.remote(base_url="http://127.0.0.1:8000", api_key="k3y", kb="handbook")
    docs = retriever.invoke("how many vacation days?", k=2)

    store = KnowledgeBaseVectorStore.local(kb="notes", home=".rag")    # creates "notes" if missing
    store.add_texts(["Parking is free on Fridays."], metadatas=[{"team": "ops"}], ids=["parking"])
    store.similarity_search("where can I park?", k=1)

Retriever documents carry ``page_content`` = chunk text and metadata ``source``, ``page``, ``doc_id``,
``chunk_id``, ``score`` (and ``kb``, ``heading``). The vector store's texts go through the normal
ingest path (chunked, embedded, committed, BM25-indexed); each text is one document whose id is the
LangChain id, and its search results carry back exactly the metadata it was added with, as LangChain
expects of a vector store. Documents that came in another way (uploads, folder syncs) have the id
``source`` and the catalog metadata.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from rag.api.schemas import HitOut

if TYPE_CHECKING:
    from rag.client import AsyncRagClient, RagClient
    from rag.service import RagService

__all__ = ["KnowledgeBaseRetriever", "KnowledgeBaseVectorStore"]

Mode = Literal["hybrid", "bm25", "dense"]

# Texts added through the vector store are documents named ``langchain/<id>.txt``: an upload needs a
# file name with a known extension, and the prefix keeps LangChain ids apart from ordinary sources.
_PREFIX, _SUFFIX = "langchain/", ".txt"


def source_for_id(doc_id: str) -> str:
    return f"{_PREFIX}{doc_id}{_SUFFIX}"


def id_for_source(source: str) -> str:
    if source.startswith(_PREFIX) and source.endswith(_SUFFIX) and len(source) > len(_PREFIX) + len(_SUFFIX):
        return source[len(_PREFIX):-len(_SUFFIX)]
    return source


# -- in-process services, one per RAG_HOME (the models are loaded once) ----------------------------

_services: dict[Path, RagService] = {}
_services_lock = threading.Lock()


def local_service(home: str | Path | None = None) -> RagService:
    """The process's ``RagService`` for ``home`` (default: the ``RAG_HOME`` setting), created on first use."""
    from rag.config import load_settings
    from rag.service import RagService

    settings = load_settings(home=Path(home)) if home is not None else load_settings()
    key = settings.home.expanduser().resolve()
    with _services_lock:
        if key not in _services:
            _services[key] = RagService(settings)
        return _services[key]


# -- what the adapters need from a KB: search, add, delete, get ----------------------------------



def _indexed_documents(documents: Iterable[Any], ids: Sequence[str]) -> dict[str, str]:
    """The doc id of each wanted LangChain id that is indexed (documents: anything with source/status/doc_id)."""
    wanted = set(ids)
    found: dict[str, str] = {}
    for doc in documents:
        lc_id = id_for_source(doc.source)
        if lc_id in wanted and doc.status == "indexed" and (lc_id not in found or doc.source != lc_id):
            found[lc_id] = doc.doc_id
    return found

class _Backend(Protocol):
    def search(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]: ...

    async def asearch(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]: ...


class _LocalBackend:
    def __init__(self, service: RagService) -> None:
        self.service = service

    def search(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]:
        hits = self.service.search(kb, query, **options)
        return [HitOut(**hit.to_json()) for hit in hits]

    async def asearch(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]:
        from anyio import to_thread

        return await to_thread.run_sync(lambda: self.search(kb, query, options))


class _RemoteBackend:
    def __init__(self, base_url: str, api_key: str | None) -> None:
        from rag.client import AsyncRagClient, RagClient

        self.client: RagClient = RagClient(base_url, api_key=api_key)
        self._base_url, self._api_key = base_url, api_key
        self._async: AsyncRagClient | None = None
        self._async_class = AsyncRagClient

    def search(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]:
        return self.client.search(kb, query, **options).hits

    async def asearch(self, kb: str, query: str, options: dict[str, Any]) -> list[HitOut]:
        # A fresh async client per call: an httpx.AsyncClient is bound to the event loop that made it.
        async with self._async_class(self._base_url, api_key=self._api_key) as client:
            return (await client.search(kb, query, **options)).hits


def _search_options(k: int, mode: Mode, bm25_weight: float | None, dense_weight: float | None,
                    filter: dict[str, Any] | None) -> dict[str, Any]:
    options: dict[str, Any] = {"top_k": k, "mode": mode}
    if bm25_weight is not None:
        options["bm25_weight"] = bm25_weight
    if dense_weight is not None:
        options["dense_weight"] = dense_weight
    if filter:
        options["filter"] = filter
    return options


def _merge(per_kb: Sequence[tuple[str, list[HitOut]]], k: int) -> list[tuple[str, HitOut]]:
    """Several KBs' hits as one list, best score first (scores are each query's [0, 1] fusion scores)."""
    merged = [(kb, hit) for kb, hits in per_kb for hit in hits]
    merged.sort(key=lambda pair: pair[1].score, reverse=True)
    return merged[:k]


# -- the retriever ------------------------------------------------------------------------------


class KnowledgeBaseRetriever(BaseRetriever):
    """A LangChain retriever over one knowledge base (``kb="handbook"``) or several (``kb=["a", "b"]``).

    Reach the KB in-process (``home=...`` or ``service=...``: calls ``RagService``) or over REST
    (``base_url=...``, ``api_key=...``). ``k`` is the number of documents, also accepted by
    ``invoke(query, k=...)``, as are ``mode``, ``bm25_weight``, ``dense_weight`` and ``filter``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: str | list[str]
    k: int = Field(default=4, ge=1, le=1000)
    mode: Mode = "hybrid"
    bm25_weight: float | None = Field(default=None, ge=0)
    dense_weight: float | None = Field(default=None, ge=0)
    filter: dict[str, Any] | None = Field(default=None, description="search filters, where the server has them")
    home: Path | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    service: Any = Field(default=None, exclude=True, description="a RagService to use in-process")

    _backend: _Backend = PrivateAttr()

    @model_validator(mode="after")
    def _connect(self) -> KnowledgeBaseRetriever:
        if self.base_url is not None:
            key = self.api_key.get_secret_value() if self.api_key else None
            self._backend = _RemoteBackend(self.base_url, key)
        else:
            service = self.service if self.service is not None else local_service(self.home)
            for kb in self.kbs:
                service.get_kb(kb)  # an unknown KB fails here, with its name, not at the first query
            self._backend = _LocalBackend(service)
        return self

    @classmethod
    def local(cls, kb: str | list[str], home: str | Path | None = None, k: int = 4,
              service: RagService | None = None, **fields: Any) -> KnowledgeBaseRetriever:
        """In-process: the KB under ``home`` (default ``RAG_HOME``), searched by this process."""
        return cls(kb=kb, home=Path(home) if home is not None else None, k=k, service=service, **fields)

    @classmethod
    def remote(cls, base_url: str, kb: str | list[str], api_key: str | None = None, k: int = 4,
               **fields: Any) -> KnowledgeBaseRetriever:
        """Over REST: a running ``rag serve`` at ``base_url``; ``api_key`` when the server has keys."""
        return cls(kb=kb, base_url=base_url, api_key=SecretStr(api_key) if api_key else None, k=k, **fields)

    @property
    def kbs(self) -> list[str]:
        return [self.kb] if isinstance(self.kb, str) else list(self.kb)

    def _options(self, overrides: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        unknown = set(overrides) - {"k", "mode", "bm25_weight", "dense_weight", "filter"}
        if unknown:
            raise TypeError(f"unknown search option(s): {', '.join(sorted(unknown))}")
        k = int(overrides.get("k", self.k))
        if k < 1:
            raise ValueError("k must be at least 1")
        options = _search_options(k, overrides.get("mode", self.mode), overrides.get("bm25_weight", self.bm25_weight),
                                  overrides.get("dense_weight", self.dense_weight),
                                  overrides.get("filter", self.filter))
        return k, options

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        k, options = self._options(kwargs)
        per_kb = [(kb, self._backend.search(kb, query, options)) for kb in self.kbs]
        return [_retrieved(kb, hit) for kb, hit in _merge(per_kb, k)]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        k, options = self._options(kwargs)
        per_kb = [(kb, await self._backend.asearch(kb, query, options)) for kb in self.kbs]
        return [_retrieved(kb, hit) for kb, hit in _merge(per_kb, k)]


def _retrieved(kb: str, hit: HitOut) -> Document:
    metadata: dict[str, Any] = {"source": hit.source, "page": hit.page, "doc_id": hit.doc_id,
                                "chunk_id": hit.chunk_id, "score": hit.score, "kb": kb}
    if hit.heading:
        metadata["heading"] = hit.heading
    return Document(page_content=hit.text, metadata=metadata, id=f"{kb}:{hit.chunk_id}")


# -- the vector store ---------------------------------------------------------------------------


class _Documents(Protocol):
    """A KB's documents as the vector store needs them."""

    def add(self, kb: str, items: list[tuple[str, str, dict[str, Any]]]) -> None: ...

    def find(self, kb: str, ids: Sequence[str]) -> dict[str, str]: ...  # LangChain id -> doc_id

    def delete(self, kb: str, doc_ids: list[str]) -> None: ...

    def text(self, kb: str, doc_id: str) -> str: ...

    def metadata(self, kb: str, hit: HitOut) -> dict[str, Any] | None: ...


def _catalog_metadata(hit: HitOut) -> dict[str, Any]:
    return {"source": hit.source, "page": hit.page, "doc_id": hit.doc_id, "chunk_id": hit.chunk_id}


class _LocalDocuments:
    """Texts are written under ``RAG_HOME/langchain/<kb>/`` (the stored originals, with their metadata
    beside them as JSON) and ingested by ``RagService`` as documents named ``langchain/<id>.txt``."""

    def __init__(self, service: RagService) -> None:
        self.service = service

    def _folder(self, kb: str) -> Path:
        return self.service.settings.home / "langchain" / kb

    def _paths(self, kb: str, doc_id: str) -> tuple[Path, Path]:
        from ingest.discovery import document_id

        stem = self._folder(kb) / document_id(doc_id)
        return stem.with_suffix(".txt"), stem.with_suffix(".json")

    def add(self, kb: str, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        self._folder(kb).mkdir(parents=True, exist_ok=True)
        files: list[tuple[Path, str]] = []
        for doc_id, text, metadata in items:
            text_path, meta_path = self._paths(kb, doc_id)
            _write_atomic(meta_path, json.dumps(metadata, ensure_ascii=False, default=str).encode("utf-8"))
            _write_atomic(text_path, text.encode("utf-8"))
            files.append((text_path, source_for_id(doc_id)))
        report = self.service.ingest_files(kb, files)
        if report.failed:
            problems = "; ".join(f"{id_for_source(str(f['path']))}: {f['error']}" for f in report.failed)
            raise ValueError(f"could not add {len(report.failed)} text(s): {problems}")

    def find(self, kb: str, ids: Sequence[str]) -> dict[str, str]:
        return _indexed_documents(self.service.list_documents(kb), ids)

    def delete(self, kb: str, doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            document = self.service.get_document(kb, doc_id)
            self.service.delete_document(kb, doc_id)
            if document.source.startswith(_PREFIX):
                for path in self._paths(kb, id_for_source(document.source)):
                    path.unlink(missing_ok=True)

    def text(self, kb: str, doc_id: str) -> str:
        document = self.service.get_document(kb, doc_id)
        if document.source.startswith(_PREFIX):
            text_path, _ = self._paths(kb, id_for_source(document.source))
            if text_path.is_file():
                return text_path.read_text(encoding="utf-8")
        return "\n\n".join(chunk.text for chunk in self.service.document_chunks(kb, doc_id))

    def metadata(self, kb: str, hit: HitOut) -> dict[str, Any] | None:
        if not hit.source.startswith(_PREFIX):
            return None
        _, meta_path = self._paths(kb, id_for_source(hit.source))
        try:
            data = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


class _RemoteDocuments:
    """Texts are uploaded as ``langchain/<id>.txt``. The server keeps no LangChain metadata, so remote
    results carry the catalog metadata (source, page, doc_id, chunk_id) instead of what was added."""

    def __init__(self, client: RagClient) -> None:
        self.client = client

    def add(self, kb: str, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        from rag.api.schemas import IngestResult
        from rag.api.uploads import safe_relative_name

        for doc_id, _, _ in items:
            if safe_relative_name(source_for_id(doc_id)) != source_for_id(doc_id):
                raise ValueError(f"id {doc_id!r} cannot name an uploaded file: use letters, digits, '-', '_', '.'")
        report = self.client.upload(kb, [(source_for_id(i), text.encode("utf-8")) for i, text, _ in items], wait=True)
        assert isinstance(report, IngestResult)
        if report.failed:
            problems = "; ".join(f"{id_for_source(f.path)}: {f.error}" for f in report.failed)
            raise ValueError(f"could not add {len(report.failed)} text(s): {problems}")

    def find(self, kb: str, ids: Sequence[str]) -> dict[str, str]:
        return _indexed_documents(self.client.list_documents(kb), ids)

    def delete(self, kb: str, doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            self.client.delete_document(kb, doc_id)

    def text(self, kb: str, doc_id: str) -> str:
        from rag.client import RagApiError

        try:
            chunks = self.client.document_chunks(kb, doc_id)
        except RagApiError as exc:
            if exc.status in (404, 405) and exc.code in ("not_found", "method_not_allowed"):  # no such route
                raise NotImplementedError("get_by_ids needs the server's GET /api/kbs/{kb}/documents/{doc_id}/chunks "
                                          "route, which this server does not have") from exc
            raise
        return "\n\n".join(str(chunk["text"]) for chunk in chunks)

    def metadata(self, kb: str, hit: HitOut) -> dict[str, Any] | None:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
        handle.write(data)
    Path(handle.name).replace(path)


class KnowledgeBaseVectorStore(VectorStore):
    """A LangChain vector store over one knowledge base, with the KB's own embedders (the
    ``embedding`` argument of ``from_texts`` is not used: the KB embeds what it ingests).

    ``add_texts`` ingests each text as one document (upserted by id), ``delete(ids)`` removes them,
    ``get_by_ids`` reads them back, ``similarity_search(_with_score)`` runs the KB's hybrid search
    (``mode``: ``hybrid``, ``bm25`` or ``dense``); scores are the fused [0, 1] scores, higher is better.
    """

    def __init__(self, kb: str, search: _Backend, documents: _Documents, mode: Mode = "hybrid") -> None:
        self.kb = kb
        self.mode: Mode = mode
        self._search = search
        self._documents = documents

    @classmethod
    def local(cls, kb: str, home: str | Path | None = None, service: RagService | None = None,
              mode: Mode = "hybrid", description: str = "") -> KnowledgeBaseVectorStore:
        """In-process, under ``home`` (default ``RAG_HOME``); the KB is created if missing."""
        from rag.errors import KBNotFound

        service = service if service is not None else local_service(home)
        try:
            service.get_kb(kb)
        except KBNotFound:
            service.create_kb(kb, description)
        return cls(kb, _LocalBackend(service), _LocalDocuments(service), mode)

    @classmethod
    def remote(cls, base_url: str, kb: str, api_key: str | None = None, mode: Mode = "hybrid",
               create: bool = True, description: str = "") -> KnowledgeBaseVectorStore:
        """Over REST; with ``create`` (and an admin key) the KB is created if missing."""
        from rag.client import RagApiError

        backend = _RemoteBackend(base_url, api_key)
        try:
            backend.client.get_kb(kb)
        except RagApiError as exc:
            if exc.status != 404 or not create:
                raise
            backend.client.create_kb(kb, description)
        return cls(kb, backend, _RemoteDocuments(backend.client), mode)

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[Any, Any]] | None = None, *, ids: list[str] | None = None,
                   **kwargs: Any) -> KnowledgeBaseVectorStore:
        """``from_texts(texts, None, kb="notes", home=...)`` or with ``base_url=...`` for a server."""
        kb = kwargs.pop("kb", None)
        if not kb:
            raise ValueError("from_texts needs kb=NAME")
        store = cls.remote(kb=kb, **kwargs) if "base_url" in kwargs else cls.local(kb=kb, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # -- writing --------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[Any, Any]] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError("metadatas must have one entry per text")
        if ids is not None and len(ids) != len(texts):
            raise ValueError("ids must have one entry per text")
        chosen = [str(given) if given else uuid.uuid4().hex for given in (ids or [None] * len(texts))]
        if len(set(chosen)) != len(chosen):
            raise ValueError("ids must be unique within one call")
        for text in texts:
            if not text or not text.strip():
                raise ValueError("texts must not be empty")
        items = [(doc_id, text, dict(metadatas[i]) if metadatas else {})
                 for i, (doc_id, text) in enumerate(zip(chosen, texts, strict=True))]
        if items:
            self._documents.add(self.kb, items)
        return chosen

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the documents with these ids; ids that do not exist are ignored."""
        if not ids:
            return None
        found = self._documents.find(self.kb, ids)
        self._documents.delete(self.kb, list(found.values()))
        return True

    # -- reading --------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        found = self._documents.find(self.kb, ids)
        documents = []
        for lc_id in dict.fromkeys(ids):
            if lc_id not in found:
                continue
            doc_id = found[lc_id]
            documents.append(Document(id=lc_id, page_content=self._documents.text(self.kb, doc_id),
                                      metadata=self._stored_metadata(doc_id, lc_id)))
        return documents

    def _stored_metadata(self, doc_id: str, lc_id: str) -> dict[str, Any]:
        probe = HitOut(chunk_id=-1, doc_id=doc_id, source=source_for_id(lc_id), page=None, text="", score=0.0)
        stored = self._documents.metadata(self.kb, probe)
        return stored if stored is not None else {"source": lc_id, "doc_id": doc_id}

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        options = _search_options(k, kwargs.get("mode", self.mode), kwargs.get("bm25_weight"),
                                  kwargs.get("dense_weight"), kwargs.get("filter"))
        return [(self._found(hit), hit.score) for hit in self._search.search(self.kb, query, options)]

    async def asimilarity_search_with_score(self, query: str, k: int = 4,
                                            **kwargs: Any) -> list[tuple[Document, float]]:
        options = _search_options(k, kwargs.get("mode", self.mode), kwargs.get("bm25_weight"),
                                  kwargs.get("dense_weight"), kwargs.get("filter"))
        hits = await self._search.asearch(self.kb, query, options)
        return [(self._found(hit), hit.score) for hit in hits]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self) -> Any:
        return lambda score: score  # the fused score already lies in [0, 1], higher is better

    def _found(self, hit: HitOut) -> Document:
        stored = self._documents.metadata(self.kb, hit)
        return Document(id=id_for_source(hit.source), page_content=hit.text,
                        metadata=stored if stored is not None else _catalog_metadata(hit))
