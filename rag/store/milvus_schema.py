"""The Milvus layout of the index: collections, fields, filter expressions and term hashing.

Layout (docs/deploy.md): a handful of collections shared by every KB, the KB as partition key
(Milvus's guidance for many tenants: partition keys, not a collection per tenant):

- ``<prefix>_lexical``: one row per chunk: BM25 term weights as a sparse vector, the chunk length.
- ``<prefix>_dense_<model>``: one collection per embedding model (one dimension each): one row per
  chunk embedded by that model, its vector and its document's vector.
- ``<prefix>_generations``: one row per (KB, committed generation): the KB-wide BM25 statistics
  (document frequencies as a sparse vector, chunk count, total length) and the vector counts per space.

Every chunk row carries ``added_gen`` and ``deleted_gen``; a reader at generation G filters
``added_gen <= G and deleted_gen > G``, so rows of an uncommitted generation are never seen.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

ALIVE = 2**62  # deleted_gen of a chunk no generation has deleted
KB_BYTES = 256  # 64 Unicode letters at most (rag.service.validate_kb_name), 4 bytes each
DOC_ID_BYTES = 2048
SPACE_SENTINEL = 0  # the sparse key no term hashes to: keeps empty token lists non-empty vectors
TERM_KEYS = 2**32 - 2  # Milvus sparse indices are uint32 below 2**32 - 1
# The saturation baked into the stored weights; exact scores are recomputed per query with the settings.
SEARCH_K1 = 1.2
SEARCH_B = 0.75
MAX_TOP_K = 16_384  # Milvus's limit on limit + offset


@lru_cache(maxsize=1_000_000)
def term_key(token: str) -> int:
    """A token's sparse dimension: a 32-bit hash (collisions merge two terms' statistics; at 100k terms
    a handful of rare pairs)."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little") % TERM_KEYS + 1


def literal(value: str) -> str:
    """A string literal of Milvus's expression language (double-quoted, backslash escapes)."""
    return json.dumps(value, ensure_ascii=False)


def visible(kb: str, generation: int) -> str:
    return f"kb == {literal(kb)} and added_gen <= {generation} and deleted_gen > {generation}"


def restricted(expression: str, doc_ids: frozenset[str] | None) -> str:
    if doc_ids is None:
        return expression
    return f"{expression} and doc_id in [{', '.join(literal(d) for d in sorted(doc_ids))}]"


def ids_in(ids: list[int]) -> str:
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


def collection_name(prefix: str, kind: str, model: str | None = None) -> str:
    if model is None:
        return f"{prefix}_{kind}"
    safe = re.sub(r"[^0-9A-Za-z_]", "_", model)
    return f"{prefix}_{kind}_{safe}"


def chunk_fields(schema: Any, data_type: Any) -> None:
    """The fields every chunk collection has."""
    schema.add_field("id", data_type.INT64, is_primary=True)
    schema.add_field("kb", data_type.VARCHAR, max_length=KB_BYTES, is_partition_key=True)
    schema.add_field("doc_id", data_type.VARCHAR, max_length=DOC_ID_BYTES)
    schema.add_field("language", data_type.VARCHAR, max_length=16)
    schema.add_field("added_gen", data_type.INT64)
    schema.add_field("deleted_gen", data_type.INT64)
