"""Dify's External Knowledge API: ``POST /retrieval`` answers Dify's knowledge retrieval from a KB.

Dify sends ``Authorization: Bearer KEY`` and ``{"knowledge_id", "query", "retrieval_setting": {"top_k",
"score_threshold"}, "metadata_condition"?}``; ``knowledge_id`` is the KB name. The answer is HTTP 200
``{"records": [{"content", "score", "title", "metadata"}]}`` (``metadata`` always an object). Errors use
the shape Dify's documentation suggests, ``{"error_code", "error_msg"}``: 1001 (the Authorization header
is not ``Bearer KEY``) and 1002 (the key is unknown, or may not use this KB) with HTTP 403, which is
what Dify's "add external knowledge API" check reads as a bad key; 2001 (no such KB) with 404. The
check posts no body with a good key: that gets a 422 naming the missing fields, which Dify accepts.
Auth is checked before the body is read, so a bad key is a 403 whatever the body.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag.api.auth import ANONYMOUS_ADMIN, Principal, Role
from rag.api.state import ApiState
from rag.errors import KBNotFound, RagError
from rag.types import Hit

router = APIRouter(tags=["Dify external knowledge"])

INVALID_AUTH_HEADER = 1001
AUTH_FAILED = 1002
KNOWLEDGE_NOT_FOUND = 2001


class DifyRetrievalSetting(BaseModel):
    top_k: int = Field(ge=1, le=1000, description="the most records to return")
    score_threshold: float = Field(default=0.0, ge=0, le=1, description="0.0: no threshold")


class DifyCondition(BaseModel):
    name: str | list[str] = Field(description="metadata field(s): source, doc_id, page, heading, chunk_id, kb")
    comparison_operator: str
    value: str | int | float | list[str] | None = None


class DifyMetadataCondition(BaseModel):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[DifyCondition] = []


class DifyRetrievalRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    knowledge_id: str = Field(min_length=1, description="the KB name")
    query: str = Field(min_length=1, max_length=4000)
    retrieval_setting: DifyRetrievalSetting
    metadata_condition: DifyMetadataCondition | None = None


class DifyRecord(BaseModel):
    content: str
    score: float
    title: str
    metadata: dict[str, Any]


class DifyRetrievalResponse(BaseModel):
    records: list[DifyRecord]


class DifyError(BaseModel):
    error_code: int
    error_msg: str


def _error(status: int, code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code in (INVALID_AUTH_HEADER, AUTH_FAILED) else None
    return JSONResponse(DifyError(error_code=code, error_msg=message).model_dump(), status_code=status,
                        headers=headers)


def _principal(state: ApiState, authorization: str | None) -> Principal | JSONResponse:
    if not state.keys.enabled:
        return ANONYMOUS_ADMIN
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(403, INVALID_AUTH_HEADER,
                      "Invalid Authorization header format. Expected 'Bearer <api-key>' format.")
    principal = state.keys.principal_for(token.strip())
    if principal is None:
        return _error(403, AUTH_FAILED, "Authorization failed: unknown API key.")
    return principal


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined, to declare a body the route reads itself."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[no-any-return]


@router.post("/retrieval", response_model=DifyRetrievalResponse,
             responses={403: {"model": DifyError}, 404: {"model": DifyError}, 422: {"model": DifyError}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _inline_schema(DifyRetrievalRequest)}}}})
async def retrieval(request: Request) -> Any:
    """Dify's External Knowledge API (register this server's root URL as the endpoint in Dify).

    Body: `{"knowledge_id": KB, "query", "retrieval_setting": {"top_k", "score_threshold"},
    "metadata_condition"?: {"logical_operator": "and"|"or", "conditions": [{"name", "comparison_operator",
    "value"}]}}`; it is read after the key is checked (a bad key is a 403 whatever the body).
    """
    state: ApiState = request.app.state.api
    who = _principal(state, request.headers.get("authorization"))
    if isinstance(who, JSONResponse):
        return who
    request.state.principal = who  # the audit log names who asked
    try:
        body = DifyRetrievalRequest.model_validate(json.loads(await request.body() or b"null"))
    except (ValueError, ValidationError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        return _error(422, 422, _describe(exc))
    if not who.may_use(body.knowledge_id) or who.role < Role.reader:
        return _error(403, AUTH_FAILED, f"Authorization failed: this API key may not use '{body.knowledge_id}'.")
    started = time.perf_counter()
    try:
        records = await run_in_threadpool(_records, state, body)
    except KBNotFound:
        return _error(404, KNOWLEDGE_NOT_FOUND, f"The knowledge does not exist: '{body.knowledge_id}'.")
    except RagError as exc:
        return _error(exc.http_status, exc.http_status, exc.message)
    state.metrics.search.observe(time.perf_counter() - started)
    return DifyRetrievalResponse(records=records)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
    return "the body must be a JSON object: {knowledge_id, query, retrieval_setting: {top_k, score_threshold}}"


def _records(state: ApiState, body: DifyRetrievalRequest) -> list[DifyRecord]:
    setting = body.retrieval_setting
    condition = body.metadata_condition if body.metadata_condition and body.metadata_condition.conditions else None
    # Conditions are applied to the hits, so fetch more than top_k for them to choose from.
    wanted = min(setting.top_k * 4, 1000) if condition else setting.top_k
    hits = state.service.search(body.knowledge_id, body.query, top_k=wanted)
    records = []
    for hit in hits:
        if hit.score < setting.score_threshold:  # 0.0 keeps everything
            continue
        metadata = _metadata(body.knowledge_id, hit)
        if condition is not None and not matches(condition, metadata):
            continue
        records.append(DifyRecord(content=hit.text, score=hit.score, title=hit.source, metadata=metadata))
    return records[: setting.top_k]


def _metadata(kb: str, hit: Hit) -> dict[str, Any]:
    data: dict[str, Any] = {"source": hit.source, "doc_id": hit.doc_id, "chunk_id": hit.chunk_id, "kb": kb,
                            "page": hit.page, "heading": hit.heading}
    return {key: value for key, value in data.items() if value is not None}


# -- metadata_condition -------------------------------------------------------------------------


def matches(condition: DifyMetadataCondition, metadata: dict[str, Any]) -> bool:
    results = (_holds(item, metadata) for item in condition.conditions)
    return all(results) if condition.logical_operator == "and" else any(results)


def _holds(item: DifyCondition, metadata: dict[str, Any]) -> bool:
    names = [item.name] if isinstance(item.name, str) else item.name
    return any(_compare(item.comparison_operator, metadata.get(name), item.value) for name in names)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    """Dify's comparison operators on one metadata value (``None`` when the hit has no such field)."""
    op = operator.strip().lower()
    if op in {"empty", "null"}:
        return actual is None or actual == ""
    if op in {"not empty", "not null"}:
        return actual is not None and actual != ""
    if actual is None:
        return op in {"not contains", "is not", "not in", "≠", "!="}
    text, wanted = str(actual), "" if expected is None else str(expected)
    if op in {"in", "not in"}:
        values = expected if isinstance(expected, list) else [part.strip() for part in wanted.split(",")]
        return (text in [str(v) for v in values]) == (op == "in")
    string_ops = {
        "contains": lambda: wanted in text,
        "not contains": lambda: wanted not in text,
        "start with": lambda: text.startswith(wanted),
        "end with": lambda: text.endswith(wanted),
        "is": lambda: text == wanted,
        "is not": lambda: text != wanted,
        "before": lambda: text < wanted,
        "after": lambda: text > wanted,
    }
    if op in string_ops:
        return string_ops[op]()
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    numeric = {"=": left == right, "≠": left != right, "!=": left != right, ">": left > right, "<": left < right,
               "≥": left >= right, ">=": left >= right, "≤": left <= right, "<=": left <= right}
    return numeric.get(op, False)
