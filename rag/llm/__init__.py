"""Chat-model backends behind one protocol; ``create_chat_model`` picks one from the settings.

Backends import their heavy libraries (xllamacpp, torch, transformers) only when chosen.
"""

from __future__ import annotations

from pathlib import Path

from rag.config import LLMSettings
from rag.errors import ConfigError, ModelUnavailable
from rag.llm.assets import BUNDLED_GGUF_NAME, bundled_gguf_path
from rag.llm.base import ChatMessage, ChatModel, GenerationParams, complete

__all__ = [
    "BUNDLED_GGUF_NAME",
    "ChatMessage",
    "ChatModel",
    "GenerationParams",
    "bundled_gguf_path",
    "complete",
    "create_chat_model",
    "models_dir",
]

BUNDLED = "bundled"
BUNDLED_NAME = "qwen2.5-coder-0.5b-instruct"


def models_dir(home: Path) -> Path:
    """Where assembled and converted model files are cached."""
    return home / "models"


def create_chat_model(settings: LLMSettings, home: Path, models: Path | None = None) -> ChatModel:
    """The chat model of ``settings``; its files (the assembled bundled GGUF, converted weights) are cached
    in ``models`` (the ``models_dir`` setting) or, when not given, in ``home``/models."""
    folder = models if models is not None else models_dir(home)
    if settings.backend == "llamacpp":
        return _llamacpp(settings, folder)
    if settings.backend == "transformers":
        return _transformers(settings, folder)
    if settings.backend == "openai":
        return _openai(settings)
    raise ConfigError(f"unknown LLM backend {settings.backend!r}; use llamacpp, transformers or openai")


def _llamacpp(settings: LLMSettings, folder: Path) -> ChatModel:
    from rag.llm.llamacpp import shared_llamacpp_model

    common = {"context_window": settings.context_window, "threads": settings.threads}
    if settings.model == BUNDLED:
        # Keyed by name, not path: every RAG_HOME in the process shares the one loaded copy.
        return shared_llamacpp_model(
            lambda: bundled_gguf_path(folder), key=BUNDLED, name=BUNDLED_NAME, **common
        )
    path = Path(settings.model).expanduser()
    if settings.gguf_file:
        path = path / settings.gguf_file
    if not path.is_file():
        raise ModelUnavailable(f"llamacpp backend needs a GGUF file; {path} does not exist")
    return shared_llamacpp_model(lambda: path, key=str(path.resolve()), **common)


def _transformers(settings: LLMSettings, folder: Path) -> ChatModel:
    from rag.llm.transformers_backend import shared_transformers_model

    common = {
        "device": settings.device,
        "threads": settings.threads,
        "context_window": settings.context_window,
        "cache_dir": folder,
        "dtype": settings.dtype,
    }
    if settings.model == BUNDLED:
        return shared_transformers_model(
            lambda: (str(bundled_gguf_path(folder).parent), BUNDLED_GGUF_NAME),
            key=BUNDLED, name=BUNDLED_NAME, **common,
        )
    model, gguf_file = settings.model, settings.gguf_file
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():  # a GGUF file named directly
        model, gguf_file = str(path.parent), path.name
    return shared_transformers_model(lambda: (model, gguf_file), key=f"{model}|{gguf_file}", **common)


def _openai(settings: LLMSettings) -> ChatModel:
    from rag.llm.openai_compat import OpenAICompatChatModel

    key = settings.api_key.get_secret_value() if settings.api_key else None
    return OpenAICompatChatModel(
        settings.base_url, settings.model, api_key=key, context_window=settings.context_window
    )
