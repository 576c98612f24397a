"""Hybrid search over one KB."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from rag.api.auth import Principal, Role, requires
from rag.api.bounds import check_question
from rag.api.schemas import HitOut, KBName, SearchRequest, SearchResponse
from rag.api.state import ApiState, api_state

router = APIRouter(prefix="/api/kbs/{kb}", tags=["search"])


@router.post("/search", response_model=SearchResponse)
def search(kb: KBName, body: SearchRequest, state: ApiState = Depends(api_state),
           _: Principal = Depends(requires(Role.reader))) -> SearchResponse:
    check_question(body.query, state.settings.server, "query")
    started = time.perf_counter()
    hits = state.service.search(kb, body.query, top_k=body.top_k, mode=body.mode,
                                bm25_weight=body.bm25_weight, dense_weight=body.dense_weight)
    state.metrics.search.observe(time.perf_counter() - started)
    return SearchResponse(query=body.query, hits=[HitOut(**hit.to_json(with_explain=body.explain)) for hit in hits])
