"""What both chat front doors (/api/kbs/{kb}/chat and /v1/chat/completions) share."""

from __future__ import annotations

from dataclasses import replace

from rag.api.schemas import CitationOut, GenerationFields
from rag.chat import generation_params
from rag.llm.base import GenerationParams
from rag.service import RagService
from rag.types import Citation


def params_from(service: RagService, fields: GenerationFields | None = None, max_tokens: int | None = None,
                stop: list[str] | None = None) -> GenerationParams:
    """The configured generation defaults, overridden by whatever the request set."""
    params = generation_params(service, None)
    overrides: dict[str, object] = {}
    if fields is not None:
        overrides = {name: value for name in ("temperature", "top_p", "max_tokens", "repetition_penalty", "seed")
                     if (value := getattr(fields, name, None)) is not None}
    if max_tokens is not None:
        overrides["max_tokens"] = max_tokens
    if stop:
        overrides["stop"] = stop
    return replace(params, **overrides)  # type: ignore[arg-type]


def citations_out(citations: list[Citation]) -> list[CitationOut]:
    return [CitationOut(**citation.to_json()) for citation in citations]
