"""Typed errors, each mapped once to an HTTP status and the one error body shape.

Every error body is `{"error": code, "detail": text}` plus optional extra fields.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class FramewatchError(Exception):
    """Base of every error the API turns into a 4xx/5xx answer."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(FramewatchError):
    status_code = 400
    code = "bad_request"


class InvalidFrame(FramewatchError):
    status_code = 400
    code = "invalid_frame"


class Unauthorized(FramewatchError):
    status_code = 401
    code = "unauthorized"


class Forbidden(FramewatchError):
    status_code = 403
    code = "forbidden"


class NotFound(FramewatchError):
    status_code = 404
    code = "not_found"


class Conflict(FramewatchError):
    status_code = 409
    code = "conflict"


class FrameTooLarge(FramewatchError):
    status_code = 413
    code = "frame_too_large"


class UnsupportedMediaType(FramewatchError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(FramewatchError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, wait_seconds: float, detail: str) -> None:
        retry = max(1, math.ceil(wait_seconds))
        super().__init__(f"{detail}; retry in {retry} s", retry_after_seconds=retry)


class ValidationFailed(FramewatchError):
    status_code = 422
    code = "validation_error"


class ProviderRejected(FramewatchError):
    """The provider answered, but refused the request or gave an unusable answer."""

    status_code = 502
    code = "provider_error"


class ProviderUnavailable(FramewatchError):
    """The provider could not be reached or kept failing after its retries."""

    status_code = 503
    code = "provider_unavailable"
