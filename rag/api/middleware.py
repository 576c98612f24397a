"""One ASGI middleware around every request: request id, body size limit, fault catching, metrics, audit.

The body limit holds for a declared Content-Length (refused before reading) and for a chunked body
(refused as soon as the bytes read pass the limit): both answer 413, whatever the route was doing.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.audit import audit_request
from rag.api.errors import REQUEST_ID_HEADER, error_body
from rag.api.metrics import Metrics
from rag.errors import PayloadTooLarge

log = logging.getLogger("rag.api")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_label(scope: Scope) -> str:
    """The route's template (``/api/kbs/{kb}``), so metrics do not get one series per KB or document."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get(REQUEST_ID_HEADER.lower(), "")
        request_id = given if _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        too_large = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if too_large and not response_started:
                # The body passed the limit while the route read it; whatever the route answers
                # (a parse error, usually), the client gets the 413.
                response_started = True
                await self._send_error(send_with_id_raw, 413, "payload_too_large", self._too_large_message(),
                                       request_id)
                return
            if too_large:
                return  # the rest of the route's answer is dropped
            await send_with_id_raw(message)

        async def send_with_id_raw(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise PayloadTooLarge(self._too_large_message())
            return message

        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > self.max_body_bytes:
                await self._send_error(send_with_id, 413, "payload_too_large", self._too_large_message(), request_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except Exception:
            if too_large:
                if not response_started:
                    await self._send_error(send_with_id_raw, 413, "payload_too_large", self._too_large_message(),
                                           request_id)
            else:
                log.exception("request %s %s %s failed", request_id, scope.get("method"), scope.get("path"))
                if not response_started:
                    await self._send_error(send_with_id, 500, "internal_error",
                                           f"internal server error (request id {request_id})", request_id)
        finally:
            self.metrics.observe_request(scope.get("method", ""), route_label(scope), status,
                                         time.perf_counter() - started)
            audit_request(scope, status)

    def _too_large_message(self) -> str:
        return f"request body is larger than the limit of {self.max_body_bytes / 1024 / 1024:g} MB"

    @staticmethod
    async def _send_error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
        body = json.dumps(error_body(code, message, request_id)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
