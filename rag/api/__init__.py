"""The HTTP front door: REST API, OpenAI-compatible /v1, health and metrics (see docs/api.md)."""

from rag.api.app import create_app

__all__ = ["create_app"]
