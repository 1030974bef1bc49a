"""The OpenAPI schema documents the errors the middleware answers before any route runs: the
body limits (413, 415, from RequestLimits) on every operation that takes a body, and the rate
limit (429) on every operation; and every documented 4xx has the one error body. schemathesis
(test_schemathesis.py) holds the answers to this schema, so a gap here is a failure there only
when a generated case happens to hit it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from framewatch.app import create_app
from tests.api_fixtures import make_settings

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def operations(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    schema = create_app(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/x.db")).openapi()
    return [(f"{method.upper()} {path}", operation)
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()]


def error_schema(operation: dict[str, Any], status: str) -> Any:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_every_operation_with_a_body_documents_413_and_415(tmp_path: Path) -> None:
    with_body = [(label, op) for label, op in operations(tmp_path) if "requestBody" in op]
    assert len(with_body) >= 20
    for label, operation in with_body:
        for status in ("413", "415"):
            assert error_schema(operation, status) == ERROR_BODY, (label, status)


def test_every_operation_documents_429_and_its_errors_have_the_error_body(
    tmp_path: Path,
) -> None:
    for label, operation in operations(tmp_path):
        assert error_schema(operation, "429") == ERROR_BODY, label
        assert "Retry-After" in operation["responses"]["429"]["headers"], label
        for status in operation["responses"]:
            if status.startswith("4"):
                assert error_schema(operation, status) == ERROR_BODY, (label, status)
