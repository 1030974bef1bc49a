"""Shared OpenAPI descriptions: the one error body, and which errors each route may answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="A stable, machine-readable code, e.g. `not_found`.")
    detail: str = Field(description="What went wrong, for a person.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


AUTH_ERRORS = error_responses(401, 403, 422)
