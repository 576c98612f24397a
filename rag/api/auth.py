"""API keys: ``KEY:role[:kb1,kb2]`` entries separated by ``;`` (``RAG_API_KEYS`` or the config file).

Off when no keys are defined. Roles are ordered reader < writer < admin; a key may be limited to
some KBs. Keys are compared in constant time and never logged (only a key's position in the list is).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.errors import ConfigError, Forbidden, Unauthorized


class Role(IntEnum):
    reader = 1  # search, chat, list and get
    writer = 2  # + upload, delete documents, sync
    admin = 3  # + create and delete KBs


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's role and the KBs it may touch (``None``: all)."""

    name: str
    role: Role
    kbs: frozenset[str] | None = None

    def may_use(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs

    def check(self, role: Role, kb: str | None = None) -> None:
        if self.role < role:
            raise Forbidden(f"this API key has the role '{self.role.name}'; this needs '{role.name}'")
        if kb is not None and not self.may_use(kb):
            raise Forbidden(f"this API key may not use knowledge base '{kb}'")


ANONYMOUS_ADMIN = Principal("anonymous", Role.admin)


@dataclass(frozen=True, slots=True)
class _Key:
    secret: bytes
    principal: Principal


class KeyRing:
    def __init__(self, keys: list[_Key]) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @classmethod
    def parse(cls, spec: str | None) -> KeyRing:
        keys: list[_Key] = []
        for position, entry in enumerate((spec or "").split(";"), start=1):
            entry = entry.strip()
            if not entry:
                continue
            parts = entry.split(":")
            if len(parts) not in (2, 3) or not parts[0]:
                raise ConfigError(f"api_keys entry {position} must look like KEY:role or KEY:role:kb1,kb2")
            secret, role_name = parts[0], parts[1].strip()
            if role_name not in Role.__members__:
                raise ConfigError(f"api_keys entry {position}: unknown role '{role_name}' (reader, writer, admin)")
            kbs = None
            if len(parts) == 3:
                kbs = frozenset(kb.strip() for kb in parts[2].split(",") if kb.strip())
            keys.append(_Key(secret.encode(), Principal(f"key#{position}", Role[role_name], kbs)))
        return cls(keys)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        return self.principal_for(token.strip()) or _raise_invalid()

    def principal_for(self, token: str) -> Principal | None:
        given = token.encode()
        found = None
        for key in self._keys:  # check every key, so timing does not reveal which one matched
            if hmac.compare_digest(key.secret, given):
                found = key.principal
        return found


def _raise_invalid() -> Principal:
    raise Unauthorized("invalid API key")


# Declared so that /docs shows the scheme and its "Authorize" button; the header is parsed by KeyRing.
_bearer = HTTPBearer(auto_error=False, description="an API key from RAG_API_KEYS (when keys are configured)")


def authenticate(request: Request) -> Principal:
    keyring: KeyRing = request.app.state.api.keys
    return keyring.authenticate(request.headers.get("authorization"))


def requires(role: Role) -> Callable[[Request], Principal]:
    """A dependency: the caller must hold ``role`` and, for routes with a ``{kb}``, may use that KB."""

    def dependency(request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
        principal = authenticate(request)
        principal.check(role, request.path_params.get("kb"))
        return principal

    dependency.__name__ = f"requires_{role.name}"
    return dependency
