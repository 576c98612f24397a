"""The one place an index backend is chosen: a ``match`` on the typed ``store.backend`` setting.

Optional backends are imported inside their arm, so the embedded default needs none of their
dependencies; a missing one is a ConfigError with the install hint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.config import Settings
from rag.embed import EmbeddingRouter
from rag.errors import ConfigError
from rag.store.backend import IndexBackend
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog
from rag.store.segment import DenseSettings

MILVUS_HINT = ("store.backend is 'milvus' but pymilvus is not installed: "
               "pip install 'rag-assistant[milvus]' (or set store.backend: local)")


def milvus_uri(settings: Settings) -> str:
    """``store.milvus_uri``, or the Milvus Lite database file in RAG_HOME when it is empty."""
    return settings.store.milvus_uri or str(settings.home / "milvus.db")


def build_index_backend(settings: Settings, catalog: Catalog, kb_dir: Callable[[str], Path],
                        router: EmbeddingRouter) -> IndexBackend:
    store, retrieval = settings.store, settings.retrieval
    bm25 = BM25Params(retrieval.bm25_method, retrieval.bm25_k1, retrieval.bm25_b)
    match store.backend:
        case "local":
            from rag.store.local import LocalBackend

            return LocalBackend(
                catalog, kb_dir, router, bm25,
                DenseSettings(store.dense_index, store.ann_min_rows, store.ivf_nprobe, store.hnsw_ef_search),
                merge_factor=store.merge_factor, background_merge=store.background_merge, device=store.device,
            )
        case "milvus":
            try:
                from rag.store.milvus import MilvusBackend
            except ImportError as exc:
                raise ConfigError(MILVUS_HINT) from exc
            if store.device != "cpu":
                raise ConfigError("store.device applies to the local backend only: Milvus searches on its own "
                                  "servers (set store.device: cpu with store.backend: milvus)")
            token = store.milvus_token.get_secret_value() if store.milvus_token else None
            return MilvusBackend(catalog, kb_dir, router, bm25, milvus_uri(settings), token,
                                 dense_index=store.dense_index, ivf_nprobe=store.ivf_nprobe,
                                 hnsw_ef_search=store.hnsw_ef_search)
