"""The operations of the API as its OpenAPI document lists them: the roles each admits
(its bearer scopes), whether it answers without a token, whether it streams."""

from dataclasses import dataclass
from typing import Any

from api.app import declare_api
from api.auth import Role

DOCUMENT: dict[str, Any] = declare_api().openapi()


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    roles: frozenset[Role]
    public: bool  # answers without a token
    streams: bool  # its answer never ends (Server-Sent Events)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _operation(method: str, path: str, definition: dict[str, Any]) -> Operation:
    security = definition.get("security", [])
    scopes = [scope for requirement in security for scope in requirement.get("bearer", [])]
    ok = definition["responses"].get("200", {}).get("content", {})
    return Operation(
        method=method.upper(),
        path=path,
        roles=frozenset(Role(scope) for scope in scopes),
        public=not security or {} in security,
        streams="text/event-stream" in ok,
    )


OPERATIONS = [
    _operation(method, path, definition)
    for path, operations in DOCUMENT["paths"].items()
    for method, definition in operations.items()
]
