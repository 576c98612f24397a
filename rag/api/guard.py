"""What stands in front of every route: the trusted-host check, rate limits, and security headers.

- **Trusted hosts.** A keyless server trusts whoever reaches it, so it answers only requests whose
  ``Host`` header names it by a loopback name (``server.allowed_hosts``): a web page that points its
  own domain at 127.0.0.1 (DNS rebinding) gets a 400, not the API.
- **Rate limits** (``server.rate_limit``, the ``limits`` library's syntax): per API key when the
  request carries a valid one, else per client address; a request over the limit gets a 429 with
  ``Retry-After``. The web UI's static files are not counted (a page load fetches dozens).
- **UI login** (``server.login_rate_limit``): failed logins per client address; once they reach the
  limit, every login from that address gets a 429 until the window has passed.
- **Headers.** ``X-Content-Type-Options: nosniff`` on every answer; on the web UI a
  Content-Security-Policy that lets the page load only from this server: no remote images, scripts,
  styles or frames, so text an injected document makes the model repeat cannot be sent elsewhere
  by the reader's browser.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.api.auth import KeyRing
from rag.api.errors import error_body

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

UI_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data: blob:; media-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
          "worker-src 'self' blob:; frame-src 'self'; frame-ancestors 'self'; object-src 'none'; base-uri 'self'; "
          "form-action 'self'")

_UI_STATIC = ("/assets/", "/static/", "/svelte/")
_UI_STATIC_FILES = ("/theme.css", "/favicon.ico", "/manifest.json", "/robots.txt")


def host_name(header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8000`` → ``::1``), lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, _, port = value.rpartition(":")
    return name if name and port.isdigit() else value


@dataclass(frozen=True, slots=True)
class RateLimit:
    items: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, spec: str) -> RateLimit | None:
        return None if spec == "off" else cls(tuple(parse_many(spec)))

    def describe(self) -> str:
        return ", ".join(str(item) for item in self.items)


class Limiter:
    """A moving window per identity, in this process's memory (the server runs one worker)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, identity: str) -> float | None:
        """Count one request; the seconds to wait when it is over the limit, else None."""
        for item in self.limit.items:
            if not self._limiter.hit(item, identity):
                return self.retry_after(item, identity)
        return None

    def blocked(self, identity: str) -> float | None:
        """Without counting: the seconds to wait if the identity is at its limit already, else None."""
        for item in self.limit.items:
            if not self._limiter.test(item, identity):
                return self.retry_after(item, identity)
        return None

    def retry_after(self, item: RateLimitItem, identity: str) -> float:
        stats = self._limiter.get_window_stats(item, identity)
        return max(1.0, stats.reset_time - time.time())


class GuardMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing, allowed_hosts: list[str] | None, rate_limit: str,
                 login_rate_limit: str, ui_path: str = "/ui") -> None:
        self.app = app
        self.keys = keys
        if allowed_hosts is None:
            allowed_hosts = [] if keys.enabled else list(LOOPBACK_HOSTS)
        self.allowed_hosts = {host_name(host) if host != "*" else "*" for host in allowed_hosts}
        requests = RateLimit.parse(rate_limit)
        logins = RateLimit.parse(login_rate_limit)
        self.requests = Limiter(requests) if requests else None
        self.logins = Limiter(logins) if logins else None
        self.ui_path = ui_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path: str = scope.get("path", "")
        checked = bool(self.allowed_hosts) and "*" not in self.allowed_hosts
        if checked and host_name(headers.get("host", "")) not in self.allowed_hosts:
            await _send_error(send, 400, "invalid_host", "this server does not answer for the host name in the "
                              "Host header (server.allowed_hosts)")
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        is_ui = path == self.ui_path or path.startswith(self.ui_path + "/")
        if self.requests is not None and not (is_ui and self._is_static(path)):
            principal = self.keys.principal_of_header(headers.get("authorization"))
            identity = f"key:{principal.name}" if principal is not None else f"address:{address}"
            wait = self.requests.hit(identity)
            if wait is not None:
                await _too_many(send, wait, f"rate limit reached ({self.requests.limit.describe()} per "
                                f"{'key' if principal else 'client address'})")
                return
        is_login = is_ui and scope.get("method") == "POST" and path.rstrip("/") == f"{self.ui_path}/login"
        if is_login and self.logins is not None:
            wait = self.logins.blocked(address)
            if wait is not None:
                await _too_many(send, wait, f"too many failed logins from this address "
                                f"({self.logins.limit.describe()}); try again later")
                return
        await self.app(scope, receive, self._wrap(send, is_ui, address if is_login else None))

    def _is_static(self, path: str) -> bool:
        rest = path[len(self.ui_path):]
        return rest.startswith(_UI_STATIC) or rest in _UI_STATIC_FILES

    def _wrap(self, send: Send, is_ui: bool, login_from: str | None) -> Callable[[Message], object]:
        logins = self.logins

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if is_ui:
                    headers.append((b"content-security-policy", UI_CSP.encode()))
                    headers.append((b"referrer-policy", b"same-origin"))
                message["headers"] = headers
                if login_from is not None and logins is not None and message["status"] >= 400:
                    logins.hit(login_from)
            await send(message)

        return wrapped


async def _too_many(send: Send, wait: float, message: str) -> None:
    await _send_error(send, 429, "too_many_requests", message, {"retry-after": str(math.ceil(wait))})


async def _send_error(send: Send, status: int, code: str, message: str,
                      extra: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.encode(), value.encode()) for name, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
