"""``ChatOpenAI`` pointed at this server's ``/v1``, keeping the ``kb:`` models' sources.

The server adds ``sources`` (the passages cited) and ``grounded`` to the final chunk of a stream and to
a whole completion. Plain ``ChatOpenAI`` streams these answers fine but drops fields OpenAI does not
define; ``KnowledgeBaseChatOpenAI`` copies them into the message's ``response_metadata``:

    llm = KnowledgeBaseChatOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="k3y", model="kb:handbook")
    for chunk in llm.stream("How many vacation days do I get?"):
        print(chunk.content, end="")
    # the last chunk: chunk.response_metadata["sources"] == [{"n", "doc_id", "source", "page", "text", ...}]
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI

__all__ = ["KnowledgeBaseChatOpenAI"]

_EXTRA_FIELDS = ("sources", "grounded")


class KnowledgeBaseChatOpenAI(ChatOpenAI):
    """A ``ChatOpenAI`` whose messages carry the server's ``sources`` and ``grounded`` fields."""

    def _convert_chunk_to_generation_chunk(self, chunk: dict, default_chunk_class: type,
                                           base_generation_info: dict | None) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        if generation is not None:
            for name in _EXTRA_FIELDS:
                if name in chunk:
                    generation.message.response_metadata[name] = chunk[name]
        return generation

    def _create_chat_result(self, response: dict | openai.BaseModel,
                            generation_info: dict | None = None) -> ChatResult:
        result = super()._create_chat_result(response, generation_info)
        data: dict[str, Any] = response if isinstance(response, dict) else (response.model_extra or {})
        for generation in result.generations:
            for name in _EXTRA_FIELDS:
                if name in data:
                    generation.message.response_metadata[name] = data[name]
        return result
