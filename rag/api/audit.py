"""The audit log: one line on the ``rag.audit`` logger for every write, allowed or refused.

A line names the action, the key (by its label or its position, never the secret), the KB, the outcome
and the HTTP status, e.g.::

    action=kb.delete key=ops-team kb=alpha outcome=ok status=200 client=10.0.0.7 request_id=3f2a…

Background work started by a write (an upload's or a sync's job) adds a second line when it ends.
Values are written as JSON strings when they hold anything but plain name characters, so a KB name or
a path cannot forge a line.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

audit_log = logging.getLogger("rag.audit")

# (method, route template) → action. Routes not listed here do not write.
WRITES: dict[tuple[str, str], str] = {
    ("POST", "/api/kbs"): "kb.create",
    ("DELETE", "/api/kbs/{kb}"): "kb.delete",
    ("POST", "/api/kbs/{kb}/documents"): "documents.upload",
    ("DELETE", "/api/kbs/{kb}/documents/{doc_id}"): "document.delete",
    ("PATCH", "/api/kbs/{kb}/documents/{doc_id}"): "document.update",
    ("POST", "/api/kbs/{kb}/sync"): "sync",
    ("POST", "/api/jobs/{job_id}/cancel"): "job.cancel",
    ("POST", "/api/conversations"): "conversation.create",
    ("PATCH", "/api/conversations/{conversation_id}"): "conversation.rename",
    ("DELETE", "/api/conversations/{conversation_id}"): "conversation.delete",
    ("POST", "/api/conversations/{conversation_id}/messages"): "conversation.message",
    ("POST", "/api/conversations/{conversation_id}/messages/{message_id}/feedback"): "feedback",
}

_PLAIN = re.compile(r"^[\w.@#:/+-]{1,200}$")


def record(request: Request, **details: Any) -> None:
    """Add details (the KB of a create, a job id, a source folder) to this request's audit line."""
    found = getattr(request.state, "audit", None)
    if found is None:
        found = {}
        request.state.audit = found
    found.update(details)


def _value(value: Any) -> str:
    text = str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def line(action: str, key: str, kb: str | None, outcome: str, **details: Any) -> str:
    fields = {"action": action, "key": key, "kb": kb if kb is not None else "-", "outcome": outcome, **details}
    return " ".join(f"{name}={_value(value)}" for name, value in fields.items() if value is not None)


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return "rejected" if status < 500 else "failed"


def audit_request(scope: Scope, status: int) -> None:
    """Called by the request middleware once the response has started: log the write, if it was one."""
    route = getattr(scope.get("route"), "path", None)
    action = WRITES.get((scope.get("method", ""), route)) if isinstance(route, str) else None
    if action is None:
        return
    state = scope.get("state") or {}
    principal = state.get("principal")
    details = dict(state.get("audit") or {})
    kb = details.pop("kb", None) or (scope.get("path_params") or {}).get("kb")
    client = scope.get("client")
    audit_log.info(line(action, principal.name if principal is not None else "unauthenticated", kb,
                        outcome_of(status), status=status, **details,
                        client=client[0] if client else None, request_id=state.get("request_id")))


def audit_job(action: str, key: str, kb: str, job_id: str, outcome: str, **details: Any) -> None:
    audit_log.info(line(action, key, kb, outcome, job_id=job_id, **details))
