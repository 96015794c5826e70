"""Request headers a dependency reads itself, checked and documented as FastAPI's `Header`
parameters are.

FastAPI solves a declared parameter anew on every request, inspecting its annotation
each time: some 100,000 instructions a header (callgrind), a tenth of what a
registration costs the server for its `Idempotency-Key` and `Prefer`. A `ReadHeader`
reads the header from the request and checks it with the pydantic type the parameter
would have; a value that does not fit is the same 422 naming `("header", name)`. Each
route declares, in the OpenAPI document, the headers its dependencies read
(`header_parameters`), as FastAPI would declare the parameter.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

Dependency = TypeVar("Dependency", bound=Callable[..., Any])


class ReadHeader:
    """An optional text header of at most `max_length` characters, each value checked by
    `checks` (pydantic validators) too."""

    def __init__(
        self, name: str, *, max_length: int, description: str, checks: tuple[AfterValidator, ...]
    ) -> None:
        self.name = name
        self._key = name.lower()
        self._adapter: TypeAdapter[str] = TypeAdapter(
            Annotated[str, Field(max_length=max_length), *checks]
        )
        self.parameter: dict[str, Any] = {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {
                "anyOf": [{"type": "string", "maxLength": max_length}, {"type": "null"}],
                "description": description,
                "title": name,
            },
            "description": description,
        }
        """Its declaration in the OpenAPI document."""

    def read(self, request: Request) -> str | None:
        """The header's (first) value, None when it was not sent; `RequestValidationError`
        when it does not fit."""
        value = request.headers.get(self._key)
        if value is None:
            return None
        try:
            return self._adapter.validate_python(value)
        except ValidationError as invalid:
            errors = invalid.errors(include_url=False)
            raise RequestValidationError(
                [{**error, "loc": ("header", self.name)} for error in errors]
            ) from None


_READ_BY: dict[Callable[..., Any], tuple[ReadHeader, ...]] = {}


def reading(*headers: ReadHeader) -> Callable[[Dependency], Dependency]:
    """Marks a dependency as reading `headers` itself, for the routes that use it to
    declare them."""

    def mark(dependency: Dependency) -> Dependency:
        _READ_BY[dependency] = headers
        return dependency

    return mark


def header_parameters(dependant: Dependant) -> list[dict[str, Any]]:
    """The OpenAPI parameters of the headers a route's dependencies read themselves, once
    each, in the order the dependencies come."""
    parameters: list[dict[str, Any]] = []
    for dependency in dependant.dependencies:
        read = _READ_BY.get(dependency.call, ()) if dependency.call else ()
        found = [header.parameter for header in read]
        for parameter in [*found, *header_parameters(dependency)]:
            if parameter not in parameters:
                parameters.append(parameter)
    return parameters
