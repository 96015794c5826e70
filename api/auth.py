"""Bearer tokens with roles. Token values are kept hashed and compared in constant time.

A handler says who may call it by the type of its `caller` parameter: `Reader`,
`Operator`, `Emitter`, `Registrar` (a bearer token of one of those roles) or
`Visitor` (anyone; signed in when a token is sent). The roles a route admits are
its security scopes, so the OpenAPI document lists them with each operation.
"""

import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.routing import APIRoute
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from starlette.responses import Response

from api.problems import Problem, problem_response, validation_response


class Role(StrEnum):
    EMITTER = "emitter"  # the training server: register, claim/start, heartbeat, report
    OPERATOR = "operator"  # force-start, mark-failed, cancel, requeue, reconcile, every read
    AUDITOR = "auditor"  # reads only


READ = frozenset({Role.OPERATOR, Role.AUDITOR, Role.EMITTER})
OPERATE = frozenset({Role.OPERATOR})
EMIT = frozenset({Role.EMITTER})
REGISTER = frozenset({Role.EMITTER, Role.OPERATOR})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: the name recorded as the `actor` of every event it causes."""

    name: str
    role: Role | None  # None: not signed in, or the server runs without tokens (loopback only)
    tokens_required: bool = False


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: Role
    digest: bytes


class TokenBookError(ValueError):
    """The configured tokens cannot be used."""


BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([\x21-\x7e]+)")
"""`Authorization: Bearer <token>`: one ASCII space, a token of visible ASCII characters.
Nothing is stripped: `str.strip` would remove non-ASCII spaces (U+00A0) as well."""
VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class TokenBook:
    """The configured tokens, by their SHA-256."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = entries

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "TokenBook":
        """`JOBLEDGER_TOKENS_FILE` (JSON: [{"name", "role", "token" | "sha256"}]) and/or
        `JOBLEDGER_TOKENS` ("name:role:token,..."); a `TokenBookError` names the first
        entry that cannot be used (an empty token, as from an unset variable, is one)."""
        env = os.environ if environ is None else environ
        entries: list[TokenEntry] = []
        path = env.get("JOBLEDGER_TOKENS_FILE")
        if path:
            entries += _file_entries(path)
        specs = filter(None, (env.get("JOBLEDGER_TOKENS") or "").split(","))
        for number, spec in enumerate(specs, start=1):
            parts = spec.strip(" \t").split(":", 2)
            if len(parts) != 3:  # the entry is not echoed: it may be a bare token
                raise TokenBookError(f"JOBLEDGER_TOKENS: entry {number} is not name:role:token")
            name, role, token = parts
            where = f"JOBLEDGER_TOKENS: token {name!r}"
            entries.append(TokenEntry(_name(name, where), _role(role, where), _token(token, where)))
        return cls(entries)

    def caller(self, authorization: str | None, allowed: frozenset[Role]) -> Caller:
        """The caller whose bearer token the `Authorization` header holds, or a 401/403
        problem."""
        if not self.enabled:
            return Caller("anonymous", None)
        bearer = BEARER.fullmatch(authorization or "")
        if bearer is None:
            raise Problem(401, "unauthorized", "a bearer token is required: Bearer <token>")
        digest = _digest(bearer[1])
        found = None
        for entry in self.entries:  # every entry is compared: no early exit to time
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            raise Problem(401, "unauthorized", "the bearer token is not valid")
        if found.role not in allowed:
            needed = " or ".join(sorted(role.value for role in allowed))
            raise Problem(
                403,
                "forbidden",
                f"role {found.role} may not do this; it needs {needed}",
                role=str(found.role),
                required_roles=sorted(role.value for role in allowed),
            )
        return Caller(found.name, found.role, tokens_required=True)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _file_entries(path: str) -> list[TokenEntry]:
    where = f"JOBLEDGER_TOKENS_FILE {path}"
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TokenBookError(f"{where}: {exc}") from exc
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise TokenBookError(f'{where}: not a list of {{"name", "role", "token"}} objects')
    entries = []
    for item in items:
        name = item.get("name")
        entry = f"{where}: token {name!r}"
        if not isinstance(name, str):
            raise TokenBookError(f"{entry}: the name must be a string")
        role = item.get("role")
        if not isinstance(role, str):
            raise TokenBookError(f"{entry}: the role must be a string")
        if "sha256" in item:
            digest = _sha256(item["sha256"], entry)
        elif isinstance(token := item.get("token"), str):
            digest = _token(token, entry)
        else:
            raise TokenBookError(f'{entry}: needs "token" or "sha256" (a string)')
        entries.append(TokenEntry(_name(name, entry), _role(role, entry), digest))
    return entries


def _name(name: str, where: str) -> str:
    if not name:
        raise TokenBookError(f"{where}: the name is empty")
    return name


def _role(role: str, where: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(member.value for member in Role)
        raise TokenBookError(f"{where}: unknown role {role!r} (one of {allowed})") from None


MIN_TOKEN_LENGTH = 16
"""A shorter token is a guessable one."""


def _token(token: str, where: str) -> bytes:
    """The digest of a configured token; refused when no caller could ever send it."""
    if not token:
        raise TokenBookError(f"{where}: the token is empty (is its variable unset?)")
    if not VISIBLE_ASCII.fullmatch(token):
        raise TokenBookError(f"{where}: a token is visible ASCII characters only")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenBookError(f"{where}: a token is at least {MIN_TOKEN_LENGTH} characters")
    return _digest(token)


def _sha256(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise TokenBookError(f"{where}: sha256 must be 64 hex digits")
    return bytes.fromhex(value)


class BearerRoles(SecurityBase):
    """The security scheme of the API: `Authorization: Bearer <token>`, checked against
    the token book. The roles a route admits are its scopes; a route without scopes
    answers anyone (signed in when a token is sent: a wrong one is still a 401)."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel()
        self.scheme_name = "bearer"

    async def __call__(self, request: Request, scopes: SecurityScopes) -> Caller:
        tokens: TokenBook = request.app.state.tokens
        authorization = request.headers.get("authorization")
        if not scopes.scopes:
            if tokens.enabled and authorization is None:
                return Caller("anonymous", None, tokens_required=True)
            return tokens.caller(authorization, frozenset(Role))
        return tokens.caller(authorization, frozenset(Role(scope) for scope in scopes.scopes))


bearer = BearerRoles()


def admitting(roles: frozenset[Role]) -> Any:
    return Security(bearer, scopes=sorted(roles))


Reader = Annotated[Caller, admitting(READ)]
Operator = Annotated[Caller, admitting(OPERATE)]
Emitter = Annotated[Caller, admitting(EMIT)]
Registrar = Annotated[Caller, admitting(REGISTER)]
Visitor = Annotated[Caller, admitting(frozenset())]


async def refusal_of_caller(request: Request) -> Problem | None:
    """Why the route that matched `request` refuses its caller, or None when it admits it.

    FastAPI reads a JSON body before it resolves the caller, so a body that is not
    JSON is refused before the token is checked; the answer to such a request asks
    this first, and a caller who may not call the route learns nothing of the route's
    input rules."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    for dependency in route.dependant.dependencies:
        if isinstance(scheme := dependency.call, BearerRoles):
            try:
                await scheme(request, SecurityScopes(list(dependency.own_oauth_scopes or ())))
            except Problem as refused:
                return refused
    return None


async def handle_invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """Input that does not fit its route: a 422 naming each field, unless the route
    refuses the caller anyway (a 401 or 403 then)."""
    refused = await refusal_of_caller(request)
    if refused is not None:
        return problem_response(refused.status, refused.kind, refused.detail, **refused.extra)
    return validation_response(exc)
