"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from rag.api.auth import Principal, Role, requires
from rag.api.metrics import CONTENT_TYPE
from rag.api.schemas import Health, Readiness
from rag.api.state import ApiState, api_state

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and answering (no auth, no I/O)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"description": "not ready yet (same body)"}})
def readyz(state: ApiState = Depends(api_state), _: Principal = Depends(requires(Role.reader))) -> JSONResponse:
    """Ready when the catalog answers and the embedding models and the LLM are loaded."""
    catalog = _catalog_open(state)
    warm = state.readiness
    ready = catalog and warm.ready
    body = Readiness(ready=ready, catalog=catalog, embeddings=warm.embeddings, llm=warm.llm,
                     detail=warm.error, warm_up_seconds=warm.seconds).model_dump()
    if not ready:
        reason = warm.error or ("the catalog cannot be read" if not catalog else "models are still loading")
        body["error"] = {"code": "not_ready", "message": reason}
    return JSONResponse(body, status_code=200 if ready else 503)


def _catalog_open(state: ApiState) -> bool:
    try:
        state.service.catalog.ping()
    except Exception:
        return False
    return True


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: ApiState = Depends(api_state), _: Principal = Depends(requires(Role.reader))) -> Response:
    """Prometheus text format: requests and latency per route, search, chat and ingest timings."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
