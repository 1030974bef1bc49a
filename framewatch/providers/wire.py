"""What the remote adapters share: reading answers, turning bad ones into clear errors.

An adapter reads a `ProviderResponse`, validates the JSON with a `WireModel` (strict: no string
numbers, no NaN) or the helpers below, and builds `FoundObject`s. Anything unusable raises
`Malformed` inside `answer_errors(...)`, which turns it into a `ProviderResponseError` naming the
provider, the endpoint and what was wrong.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from framewatch.providers.base import (
    BoundingBox,
    ConnectionReport,
    FoundObject,
    FrameImage,
    ProviderError,
    ProviderResponseError,
    ProviderResult,
    ProviderSpec,
)
from framewatch.providers.http_call import ProviderResponse

ModelT = TypeVar("ModelT", bound=BaseModel)

# Confidence values above 1 mean the provider answered in percent; above this they are nonsense.
PERCENT_SCALE = 100.0


class WireModel(BaseModel):
    """Base of the models that validate providers' answers: strict types, finite numbers."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


class OptionsModel(BaseModel):
    """Base of the models that validate `ProviderSpec.options`: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Malformed(Exception):
    """An answer is unusable; `answer_errors` adds who answered and turns it into an error."""


def describe(spec: ProviderSpec) -> str:
    return f"{spec.kind} provider {spec.name!r}"


def validation_summary(exc: ValidationError, limit: int = 3) -> str:
    """The first few problems of a Pydantic error as `a.b[0].c: message; ...`."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ""
        for item in error["loc"]:
            where += f"[{item}]" if isinstance(item, int) else (f".{item}" if where else str(item))
        parts.append(f"{where or '(body)'}: {error['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_options(model: type[ModelT], spec: ProviderSpec) -> ModelT:
    """Validate `spec.options` with `model`; a `ValueError` says which option is wrong."""
    try:
        return model.model_validate(spec.options)
    except ValidationError as exc:
        raise ValueError(f"{describe(spec)}: invalid options: {validation_summary(exc)}") from None


def require_base_url(spec: ProviderSpec) -> str:
    if not spec.base_url or not spec.base_url.strip():
        raise ValueError(f"{describe(spec)}: base_url is required")
    return spec.base_url.strip().rstrip("/")


def parse_answer(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Malformed(validation_summary(exc)) from None


@contextmanager
def answer_errors(spec: ProviderSpec, where: str, response: ProviderResponse) -> Iterator[None]:
    """Turn `Malformed` raised in the block into a `ProviderResponseError` about `where`."""
    status = response.response.status_code
    try:
        yield
    except Malformed as exc:
        raise ProviderResponseError(
            f"{describe(spec)}: unusable answer from {where} (HTTP {status}): {exc}",
            status_code=status,
            attempts=response.attempts,
        ) from None


def read_json(spec: ProviderSpec, where: str, response: ProviderResponse) -> Any:
    """The body as JSON, or a `ProviderResponseError` naming the provider and endpoint."""
    try:
        return response.json()
    except ProviderResponseError as exc:
        raise ProviderResponseError(
            f"{describe(spec)}: {where} {exc.message}",
            status_code=exc.status_code,
            attempts=exc.attempts,
        ) from None


def error_detail(response: ProviderResponse) -> str:
    """The provider's own explanation of a refusal: its JSON error/message, or the body text."""
    try:
        body = response.response.json()
    except ValueError:
        return response.response.text[:200].strip()
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(body)[:200]


def refusal(
    spec: ProviderSpec,
    where: str,
    response: ProviderResponse,
    detail: str | None = None,
    *,
    key_problem: bool = False,
) -> ProviderResponseError:
    """The error for a 4xx answer; 401/403 (and `key_problem`) point at the API key."""
    status = response.response.status_code
    detail = error_detail(response) if detail is None else detail
    if status in (401, 403) or key_problem:
        reason = f"refused the request (HTTP {status}); check the API key"
    else:
        reason = f"answered HTTP {status}"
    return ProviderResponseError(
        f"{describe(spec)}: {where} {reason}" + (f": {detail}" if detail else ""),
        status_code=status,
        attempts=response.attempts,
    )


def finite_number(value: Any, what: str) -> float:
    """`value` as a float if it is a real JSON number (not a bool, string, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{what} should be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise Malformed(f"{what} should be a finite number, got {value!r}")
    return number


def percent_scale(confidences: Iterable[float]) -> float:
    """100 if any confidence of one answer is above 1 (the answer is in percent), else 1."""
    return PERCENT_SCALE if any(value > 1 for value in confidences) else 1.0


def normalise_confidence(value: float, scale: float = 1.0, what: str = "confidence") -> float:
    """`value / scale`, which must fall in 0..1."""
    if not math.isfinite(value) or value < 0 or value > scale:
        raise Malformed(f"{what} {value!r} is outside 0..{scale:g}")
    return value / scale


def pixel_box(x_min: float, y_min: float, x_max: float, y_max: float) -> BoundingBox:
    """A box in pixels; coordinates may overshoot the frame (the pipeline clamps) but not invert."""
    for name, value in (("x_min", x_min), ("y_min", y_min), ("x_max", x_max), ("y_max", y_max)):
        finite_number(value, name)
    if x_max < x_min:
        raise Malformed(f"box has x_max {x_max:g} < x_min {x_min:g}")
    if y_max < y_min:
        raise Malformed(f"box has y_max {y_max:g} < y_min {y_min:g}")
    return BoundingBox(float(x_min), float(y_min), float(x_max), float(y_max))


def threshold_text(value: float) -> str:
    """A confidence threshold as sent in forms and query strings ("0.4", not "0.40000001")."""
    return f"{value:.4g}"


def wanted_types(spec: ProviderSpec, requested: frozenset[str]) -> frozenset[str]:
    """The requested types this provider is configured to look for."""
    return requested & spec.detection_types


def keep(obj: FoundObject, types: frozenset[str], spec: ProviderSpec) -> bool:
    return obj.type in types and obj.confidence >= spec.min_confidence


def build_result(
    objects: list[FoundObject], model: str, raw: Any, responses: Sequence[ProviderResponse]
) -> ProviderResult:
    """A result over one or more calls: latencies add up, `attempts` is the most any call took."""
    return ProviderResult(
        objects=objects,
        model=model,
        raw=raw,
        latency_ms=sum(response.latency_ms for response in responses),
        attempts=max((response.attempts for response in responses), default=1),
    )


@lru_cache(maxsize=1)
def probe_frame() -> FrameImage:
    """A blank 64x64 JPEG: the cheapest real request a detection endpoint accepts."""
    ok, encoded = cv2.imencode(".jpg", np.zeros((64, 64, 3), dtype=np.uint8))
    if not ok:  # pragma: no cover - OpenCV always encodes a blank image
        raise RuntimeError("could not encode the probe JPEG")
    return FrameImage(bytes(encoded.tobytes()), "image/jpeg", 64, 64)


async def probe_connection(
    detect: Callable[[FrameImage, frozenset[str]], Awaitable[ProviderResult]],
    types: frozenset[str],
) -> ConnectionReport:
    """Run one real detection on the probe frame and report how it went; never raises."""
    started = time.perf_counter()
    try:
        result = await detect(probe_frame(), types)
    except ProviderError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectionReport(ok=False, latency_ms=elapsed, detail=exc.message)
    except Exception as exc:  # a bug must show up in the report, not crash the caller
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectionReport(False, elapsed, f"unexpected error: {type(exc).__name__}: {exc}")
    detail = (
        f"{result.model} answered in {result.latency_ms:.0f} ms "
        f"({len(result.objects)} objects on a blank test image)"
    )
    return ConnectionReport(ok=True, latency_ms=result.latency_ms, detail=detail)
