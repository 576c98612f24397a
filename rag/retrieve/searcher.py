"""Hybrid search: BM25 and dense hits fused with language-aware weights, then optionally reranked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ingest.language import detect_language
from rag.config import RetrievalSettings
from rag.embed import EmbeddingRouter
from rag.retrieve.fusion import reciprocal_rank_fusion, score_fusion
from rag.retrieve.rerank import Reranker
from rag.retrieve.tokenize import default_tokenizer
from rag.store.catalog import Catalog
from rag.store.reader import SnapshotCache
from rag.types import Hit

Mode = Literal["hybrid", "bm25", "dense"]


@dataclass(slots=True)
class SearchOptions:
    top_k: int = 5
    mode: Mode = "hybrid"
    bm25_weight: float | None = None  # None: the settings' weight for the query's language
    dense_weight: float | None = None


class Searcher:
    def __init__(
        self,
        catalog: Catalog,
        snapshots: SnapshotCache,
        router: EmbeddingRouter,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
    ) -> None:
        self.catalog = catalog
        self.snapshots = snapshots
        self.router = router
        self.settings = settings
        self.reranker = reranker

    def search(self, kb: str, query: str, options: SearchOptions | None = None) -> list[Hit]:
        options = options or SearchOptions(top_k=self.settings.top_k)
        snapshot = self.snapshots.get(kb)
        language = detect_language(query)
        weights = self._weights(language, options)
        depth = max(self.settings.candidates, options.top_k)
        rankings: dict[str, list[int]] = {}
        results: dict[str, tuple[list[int], list[float]]] = {}
        raw: dict[str, dict[int, tuple[int, float]]] = {}

        if weights["bm25"] > 0:
            ids, scores = snapshot.bm25.search(default_tokenizer(query), depth)
            rankings["bm25"] = ids.tolist()
            results["bm25"] = (ids.tolist(), scores.tolist())
            raw["bm25"] = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(ids, scores, strict=True), 1)}
        for model, index in snapshot.dense.items():
            name = f"dense:{model}"
            embedder = self.router.embedder(model)
            weights[name] = self._dense_weight(model, embedder.multilingual, language, weights["dense"])
            if weights[name] <= 0 or len(index) == 0:
                continue
            ids, scores = index.search(embedder.embed_query(query), depth, self.settings.dense_document_weight)
            rankings[name] = ids.tolist()
            results[name] = (ids.tolist(), scores.tolist())
            raw[name] = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(ids, scores, strict=True), 1)}

        if self.settings.fusion == "rrf":
            fused = reciprocal_rank_fusion(rankings, weights, self.settings.rrf_k)
        else:
            fused = score_fusion(results, weights)
        # Over-fetch a little: chunks deleted since the snapshot was taken are dropped below.
        top = fused[: options.top_k + 5] if self.reranker is None else fused[: max(options.top_k, 20)]
        rows = self.catalog.chunks_by_id(kb, [item for item, _ in top], snapshot.generation)
        hits = []
        for chunk_id, score in top:
            row = rows.get(chunk_id)
            if row is None:
                continue
            explain = {name: {"rank": found[chunk_id][0], "score": round(found[chunk_id][1], 4)}
                       for name, found in raw.items() if chunk_id in found}
            hits.append(Hit(chunk_id=chunk_id, doc_id=row.doc_id, source=row.source, page=row.page,
                            text=row.text, score=round(score, 4), heading=row.heading, explain=explain))
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[: options.top_k]

    def _dense_weight(self, model: str, multilingual: bool, language: str, weight: float) -> float:
        if not multilingual and language != "en":
            return 0.0  # an English-only embedder ranks Chinese text at random; fusing it would hurt
        if self.router.model_for_language(language) != model:
            # This index holds the other language's chunks: a match across languages is weaker evidence.
            return weight * self.settings.cross_language_weight
        return weight

    def _weights(self, language: str, options: SearchOptions) -> dict[str, float]:
        s = self.settings
        bm25 = s.bm25_weight_zh if language == "zh" else s.bm25_weight
        dense = s.dense_weight_zh if language == "zh" else s.dense_weight
        if options.bm25_weight is not None:
            bm25 = options.bm25_weight
        if options.dense_weight is not None:
            dense = options.dense_weight
        if options.mode == "bm25":
            dense = 0.0
        elif options.mode == "dense":
            bm25 = 0.0
        return {"bm25": bm25, "dense": dense}
