"""Shared OpenAPI descriptions: the one error body, and which errors each route may answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="A stable, machine-readable code, e.g. `not_found`.")
    detail: str = Field(description="What went wrong, for a person.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI parameters for a query validated by hand against `model`, as FastAPI would
    describe them had the fields been declared as `Query` parameters."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": field}
            for name, field in schema["properties"].items()]


# The rate limiter (core/ratelimit.py) may answer any request, and failed authentications have
# their own budget: 429 is documented on every route.
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "Too many requests; the body also has `retry_after_seconds`.",
        "headers": {"Retry-After": {"description": "Seconds to wait before trying again.",
                                    "schema": {"type": "integer", "minimum": 1}}},
    },
}

AUTH_ERRORS = {**error_responses(401, 403, 422), **RATE_LIMITED}

# What RequestLimits (core/http_errors.py) answers before any route runs, so no route declares
# it: every operation that takes a body may be refused for its size or its content type.
BODY_ERRORS = {
    "413": "The body is larger than the limit; the body also has `limit_bytes`.",
    "415": "The body's content type is not one the operation accepts.",
}


def document_body_errors(app: FastAPI) -> None:
    """Make `app`'s OpenAPI schema list the body errors (413, 415) on every operation with a
    request body; call once, after the routes are added."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            add_body_errors(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def add_body_errors(schema: dict[str, Any]) -> None:
    error_body = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        ErrorBody.__name__, ErrorBody.model_json_schema())
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in BODY_ERRORS.items():
                responses.setdefault(status, {
                    "description": description,
                    "content": {"application/json": {"schema": error_body}},
                })
