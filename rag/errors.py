"""Typed errors, mapped once to HTTP status codes (rag.api) and CLI messages (rag.cli)."""

from __future__ import annotations


class RagError(Exception):
    """Base class: a failure the user can act on. ``code`` is stable and machine-readable."""

    code = "error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RagError):
    code = "invalid_config"
    http_status = 500


class InvalidInput(RagError):
    code = "invalid_input"
    http_status = 422


class KBNotFound(RagError):
    code = "kb_not_found"
    http_status = 404


class KBExists(RagError):
    code = "kb_exists"
    http_status = 409


class DocumentNotFound(RagError):
    code = "document_not_found"
    http_status = 404


class KBDeleting(RagError):
    """The KB is being deleted: it takes no new work, and its name is free again once the removal ends."""

    code = "kb_deleting"
    http_status = 409


class JobNotFound(RagError):
    code = "job_not_found"
    http_status = 404


class ConversationNotFound(RagError):
    """Also what another owner's conversation reads as: its existence is not revealed."""

    code = "conversation_not_found"
    http_status = 404


class OriginalNotKept(RagError):
    """A document's original file is served only when the server keeps it (uploads)."""

    code = "original_not_kept"
    http_status = 404


class PayloadTooLarge(RagError):
    code = "payload_too_large"
    http_status = 413


class Unauthorized(RagError):
    code = "unauthorized"
    http_status = 401


class Forbidden(RagError):
    code = "forbidden"
    http_status = 403


class ModelUnavailable(RagError):
    code = "model_unavailable"
    http_status = 503


class ParseError(RagError):
    """A single file could not be turned into text; ingest reports it and goes on."""

    code = "parse_error"
    http_status = 422
