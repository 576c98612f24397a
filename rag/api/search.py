"""Hybrid search over one KB, or over several fused into one ranking; both narrowed by an optional filter."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from rag.api.auth import Principal, Role, requires
from rag.api.bounds import check_question
from rag.api.schemas import HitOut, KBName, MultiSearchRequest, SearchRequest, SearchResponse
from rag.api.state import ApiState, api_state
from rag.types import Hit

router = APIRouter(tags=["search"])


@router.post("/api/kbs/{kb}/search", response_model=SearchResponse)
def search(kb: KBName, body: SearchRequest, state: ApiState = Depends(api_state),
           _: Principal = Depends(requires(Role.reader))) -> SearchResponse:
    """`filter` narrows the search to the documents it matches, inside the index search: a filter
    matching few documents still returns a full `top_k` of theirs."""
    check_question(body.query, state.settings.server, "query")
    started = time.perf_counter()
    hits = state.service.search(kb, body.query, top_k=body.top_k, mode=body.mode, bm25_weight=body.bm25_weight,
                                dense_weight=body.dense_weight, filter=body.filter.to_filter() if body.filter else None)
    state.metrics.search.observe(time.perf_counter() - started)
    return _response(body.query, hits, body.explain)


@router.post("/api/search", response_model=SearchResponse)
def search_many(body: MultiSearchRequest, state: ApiState = Depends(api_state),
                who: Principal = Depends(requires(Role.reader))) -> SearchResponse:
    """Several KBs searched alike (`filter` applies to each) and fused into one ranking by reciprocal
    rank fusion; each hit names its `kb` and keeps its score within that KB. A key limited to some KBs
    gets 403 naming the first KB of the list it may not read."""
    for kb in body.kbs:
        who.check(Role.reader, kb)
    check_question(body.query, state.settings.server, "query")
    started = time.perf_counter()
    hits = state.service.search_many(body.kbs, body.query, top_k=body.top_k, mode=body.mode,
                                     bm25_weight=body.bm25_weight, dense_weight=body.dense_weight,
                                     filter=body.filter.to_filter() if body.filter else None)
    state.metrics.search.observe(time.perf_counter() - started)
    return _response(body.query, hits, body.explain)


def _response(query: str, hits: list[Hit], explain: bool) -> SearchResponse:
    return SearchResponse(query=query, hits=[HitOut(**hit.to_json(with_explain=explain)) for hit in hits])
