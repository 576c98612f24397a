"""API keys: ``KEY:role[:KBS[:LABEL]]`` entries separated by ``;`` (``RAG_API_KEYS`` or the config file).

Off only when no key list is set at all; a list that is set but holds no valid key (``""``, ``";"``) or a
malformed entry is a configuration error, never "auth off". Roles are ordered reader < writer < admin;
a key may be limited to some KBs (``KBS``: comma-separated, empty for all). ``LABEL`` names the key in
the audit log (else its position, ``key#2``). Keys are compared in constant time and never logged, and
configuration errors name an entry's position, never its text.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.errors import ConfigError, Forbidden, Unauthorized


class Role(IntEnum):
    reader = 1  # search, chat, list and get
    writer = 2  # + upload and delete documents
    admin = 3  # + create and delete KBs, sync server folders (inside server.sync_roots)


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

_LABEL = re.compile(r"^[\w.@-]{1,64}$")


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
        """``None``: no keys (keyless local mode). Anything else must hold at least one valid entry."""
        if spec is None:
            return cls([])
        keys: list[_Key] = []
        names: set[str] = set()
        for position, entry in enumerate(spec.split(";"), start=1):
            entry = entry.strip()
            if not entry:
                continue  # a trailing ";" is harmless; a list with no key at all is refused below
            key = _parse_entry(entry, position)
            if any(hmac.compare_digest(key.secret, other.secret) for other in keys):
                raise ConfigError(f"api_keys entry {position} repeats the key of an earlier entry")
            if key.principal.name in names:
                raise ConfigError(f"api_keys entry {position} repeats the label of an earlier entry")
            names.add(key.principal.name)
            keys.append(key)
        if not keys:
            raise ConfigError("api_keys is set but holds no key: give KEY:role entries separated by ';', "
                              "or unset it for the keyless local mode")
        return cls(keys)

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer KEY'")
        return self.principal_for(token.strip()) or _raise_invalid()

    def principal_for(self, token: str) -> Principal | None:
        given = token.encode("utf-8", "surrogateescape")
        found = None
        for key in self._keys:  # check every key, so timing does not reveal which one matched
            if hmac.compare_digest(key.secret, given):
                found = key.principal
        return found

    def principal_of_header(self, authorization: str | None) -> Principal | None:
        """The key's principal if the header carries a valid one (rate limiting), else None; never raises."""
        scheme, _, token = (authorization or "").partition(" ")
        if not self.enabled or scheme.lower() != "bearer" or not token.strip():
            return None
        return self.principal_for(token.strip())


def _parse_entry(entry: str, position: int) -> _Key:
    parts = [part.strip() for part in entry.split(":")]
    if not 2 <= len(parts) <= 4 or not parts[0]:
        raise ConfigError(f"api_keys entry {position} must look like KEY:role[:KBS[:LABEL]] "
                          "(role: reader, writer or admin)")
    secret, role_name = parts[0], parts[1]
    if role_name not in Role.__members__:
        raise ConfigError(f"api_keys entry {position}: the role must be reader, writer or admin")
    kbs = None
    if len(parts) >= 3 and parts[2]:
        kbs = frozenset(kb.strip() for kb in parts[2].split(",") if kb.strip())
    name = f"key#{position}"
    if len(parts) == 4 and parts[3]:
        if not _LABEL.fullmatch(parts[3]):
            raise ConfigError(f"api_keys entry {position}: a label is 1-64 letters, digits, '_', '.', '@' or '-'")
        name = parts[3]
    return _Key(secret.encode(), Principal(name, Role[role_name], kbs))


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
        request.state.principal = principal  # the audit log names who asked, allowed or not
        principal.check(role, request.path_params.get("kb"))
        return principal

    dependency.__name__ = f"requires_{role.name}"
    return dependency
