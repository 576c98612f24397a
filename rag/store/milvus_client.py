"""One Milvus connection and the collections of the layout in rag.store.milvus_schema.

``uri``: a file path runs embedded Milvus Lite (one process per database file); ``http://host:19530``
a Milvus standalone or cluster (``token``: ``user:password`` or an API key).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.store.milvus_schema import ALIVE, KB_BYTES, MAX_TOP_K, chunk_fields, collection_name, ids_in, literal
from rag.store.milvus_stats import GenerationStats

try:
    from pymilvus import DataType, MilvusClient
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigError("store.backend is 'milvus' but pymilvus is not installed: "
                      "pip install 'rag-assistant[milvus]' (or set store.backend: local)") from exc

BATCH = 2_000  # rows per insert/upsert call (a 768-d batch is ~6 MB, far below gRPC's 64 MB)
STRONG = "Strong"  # a search right after a commit sees the commit's rows


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


class MilvusStore:
    def __init__(self, uri: str, token: str | None = None, prefix: str = "rag", dense_index: str = "auto",
                 ivf_nprobe: int = 32, hnsw_ef_search: int = 128) -> None:
        self.uri = uri
        self.lite = not is_server(uri)
        if self.lite:
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.client = MilvusClient(uri=str(Path(uri).expanduser()) if self.lite else uri, token=token or "")
        self.prefix = prefix
        # Milvus Lite offers FLAT and IVF_FLAT; a server HNSW as well ("auto": exact on Lite, HNSW on a server).
        kind = {"auto": "FLAT" if self.lite else "HNSW", "flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}[dense_index]
        if self.lite and kind == "HNSW":
            kind = "IVF_FLAT"
        self.dense_kind = kind
        self.ivf_nprobe = ivf_nprobe
        self.hnsw_ef_search = hnsw_ef_search
        self._lock = threading.Lock()
        self._loaded: set[str] = set()
        self._probe_cache: dict[str, list[tuple[str, Any]]] = {}
        self.lexical = collection_name(prefix, "lexical")
        self.generations = collection_name(prefix, "generations")
        self._ensure_lexical()
        self._ensure_generations()

    # -- collections ---------------------------------------------------------------------------
    def _create(self, name: str, schema: Any, index: Any) -> None:
        with self._lock:
            if name in self._loaded:
                return
            if not self.client.has_collection(name):
                self.client.create_collection(name, schema=schema, index_params=index, consistency_level=STRONG)
            self.client.load_collection(name)
            self._loaded.add(name)

    def _ensure_lexical(self) -> None:
        schema = self.client.create_schema(auto_id=False)
        chunk_fields(schema, DataType)
        schema.add_field("length", DataType.INT64)
        schema.add_field("bm25_avgdl", DataType.DOUBLE)
        schema.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
        index = self.client.prepare_index_params()
        index.add_index("bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self._create(self.lexical, schema, index)

    def _ensure_generations(self) -> None:
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=KB_BYTES + 24)
        schema.add_field("kb", DataType.VARCHAR, max_length=KB_BYTES)
        schema.add_field("generation", DataType.INT64)
        schema.add_field("info", DataType.VARCHAR, max_length=65_535)
        schema.add_field("df", DataType.SPARSE_FLOAT_VECTOR)
        index = self.client.prepare_index_params()
        index.add_index("df", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self._create(self.generations, schema, index)

    def dense(self, model: str, dim: int | None = None) -> str | None:
        """The collection of ``model``'s vectors; created (with ``dim``) when missing and ``dim`` is given."""
        name = collection_name(self.prefix, "dense", model)
        if name in self._loaded:
            return name
        if not self.client.has_collection(name):
            if dim is None:
                return None
            schema = self.client.create_schema(auto_id=False)
            chunk_fields(schema, DataType)
            schema.add_field("model", DataType.VARCHAR, max_length=256)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("docvec", DataType.FLOAT_VECTOR, dim=dim)
            index = self.client.prepare_index_params()
            for field in ("vector", "docvec"):
                index.add_index(field, **self._dense_index())
            self._create(name, schema, index)
        else:
            self._create(name, None, None)
        return name

    def _dense_index(self) -> dict[str, Any]:
        if self.dense_kind == "HNSW":
            return {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 16, "efConstruction": 200}}
        if self.dense_kind == "IVF_FLAT":
            return {"index_type": "IVF_FLAT", "metric_type": "IP", "params": {"nlist": 1024}}
        return {"index_type": "FLAT", "metric_type": "IP"}

    def dense_search_params(self, limit: int) -> dict[str, Any]:
        if self.dense_kind == "HNSW":
            return {"metric_type": "IP", "params": {"ef": max(self.hnsw_ef_search, limit)}}
        if self.dense_kind == "IVF_FLAT":
            return {"metric_type": "IP", "params": {"nprobe": self.ivf_nprobe}}
        return {"metric_type": "IP"}

    def dense_collections(self) -> list[str]:
        start = collection_name(self.prefix, "dense", "")
        return sorted(name for name in self.client.list_collections() if name.startswith(start))

    def chunk_collections(self) -> list[str]:
        found = [self.lexical]
        for name in self.dense_collections():
            if name not in self._loaded:
                self._create(name, None, None)
            found.append(name)
        return found

    # -- rows ------------------------------------------------------------------------------------
    def insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), BATCH):
            self.client.insert(collection, rows[start : start + BATCH])

    def upsert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), BATCH):
            self.client.upsert(collection, rows[start : start + BATCH])

    def rows(self, collection: str, ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 4_000):
            found += self.client.query(collection, filter=ids_in(ids[start : start + 4_000]), output_fields=fields,
                                       consistency_level=STRONG)
        return [dict(row) for row in found]

    def seal(self, collections: list[str]) -> None:
        """Flush what was written and search it once, before the catalog publishes it.

        Measured on Milvus Lite: a search over rows still in a growing segment is a slow brute-force
        scan (about 9 s for 1,000 chunks of 150 terms), and so is the first search of a just-sealed
        segment; the second takes milliseconds. The commit pays that once, not the first user."""
        for name in collections:
            self.client.flush(name)
            for field, vector in self._probes(name):
                self.client.search(name, data=[vector], anns_field=field, limit=1, consistency_level=STRONG)

    def _probes(self, collection: str) -> list[tuple[str, Any]]:
        found = self._probe_cache.get(collection)
        if found is None:
            found = []
            for field in self.client.describe_collection(collection)["fields"]:
                if field["type"] == DataType.SPARSE_FLOAT_VECTOR:
                    found.append((field["name"], {1: 1.0}))
                elif field["type"] == DataType.FLOAT_VECTOR:
                    found.append((field["name"], [1.0] + [0.0] * (int(field["params"]["dim"]) - 1)))
            self._probe_cache[collection] = found
        return found

    def delete_where(self, collection: str, expression: str) -> None:
        self.client.delete(collection, filter=expression)

    def query_all(self, collection: str, expression: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching ``expression`` (through an iterator past Milvus's 16k result window)."""
        iterator = self.client.query_iterator(collection, batch_size=4_000, filter=expression, output_fields=fields)
        found: list[dict[str, Any]] = []
        try:
            while batch := iterator.next():
                found += [dict(row) for row in batch]
        finally:
            iterator.close()
        return found

    def revive_deleted_after(self, collection: str, kb: str, generation: int) -> None:
        """Rows a writer tombstoned past ``generation`` are alive again (an uncommitted delete undone)."""
        expression = f"kb == {literal(kb)} and deleted_gen > {generation} and deleted_gen < {ALIVE}"
        for _ in range(100_000):
            rows = self.client.query(collection, filter=expression, output_fields=["*"], limit=MAX_TOP_K // 4,
                                     consistency_level=STRONG)
            if not rows:
                return
            self.upsert(collection, [dict(row) | {"deleted_gen": ALIVE} for row in rows])

    # -- generation statistics ---------------------------------------------------------------------
    @staticmethod
    def _key(kb: str, generation: int) -> str:
        return f"{kb}/{generation}"

    def stats(self, kb: str, generation: int) -> GenerationStats | None:
        rows = self.client.query(self.generations, filter=f"key == {literal(self._key(kb, generation))}",
                                 output_fields=["info", "df"], consistency_level=STRONG)
        if not rows:
            return None
        info = json.loads(rows[0]["info"])
        df = {int(key): int(round(value)) for key, value in rows[0]["df"].items() if int(key) != 0}
        return GenerationStats(info["chunks"], info["total_len"], df, info["spaces"])

    def put_stats(self, kb: str, generation: int, stats: GenerationStats) -> None:
        info = json.dumps({"chunks": stats.chunks, "total_len": stats.total_len, "spaces": stats.spaces})
        df: dict[int, float] = {0: 1.0}  # never empty
        df.update({key: float(value) for key, value in stats.df.items()})
        self.client.upsert(self.generations, [{"key": self._key(kb, generation), "kb": kb, "generation": generation,
                                               "info": info, "df": df}])

    def drop_stats(self, kb: str, expression: str) -> None:
        self.client.delete(self.generations, filter=f"kb == {literal(kb)} and {expression}")


_stores: dict[tuple[str, str, str], MilvusStore] = {}
_stores_lock = threading.Lock()


def open_store(uri: str, token: str | None = None, prefix: str = "rag", dense_index: str = "auto",
               ivf_nprobe: int = 32, hnsw_ef_search: int = 128) -> MilvusStore:
    """One store per (uri, token, prefix) in a process: Milvus Lite allows one client per database file."""
    key = (uri, token or "", prefix)
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = MilvusStore(uri, token, prefix, dense_index, ivf_nprobe, hnsw_ef_search)
        return found
