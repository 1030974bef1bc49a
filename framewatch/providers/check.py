"""`test-provider`: one real detection through a stored or an unsaved configuration."""

from __future__ import annotations

import base64
import binascii
import time

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.errors import InvalidFrame
from framewatch.events.service import EventType, Severity, record_event
from framewatch.frames.images import inspect_frame
from framewatch.providers.base import ProviderError, ProviderSpec
from framewatch.providers.registry import build_provider
from framewatch.providers.schemas import ProviderTestReport, ProviderTestRequest, TestedObject
from framewatch.providers.service import (
    check_provider_url,
    get_provider,
    spec_from_config,
    spec_from_settings,
)
from framewatch.runtime import Runtime

INLINE_NAME = "inline-test"


async def run_provider_test(
    session: AsyncSession, runtime: Runtime, request: ProviderTestRequest, *, actor: str | None
) -> ProviderTestReport:
    """Detect in the given (or the bundled sample) image and report, never raising for the
    provider's own failures: those are the report's `error`."""
    if request.provider_id is not None:
        spec = spec_from_config(await get_provider(session, request.provider_id),
                                runtime.secret_box)
    else:
        assert request.provider is not None
        check_provider_url(runtime.provider_policy, request.provider.base_url)
        spec = spec_from_settings(INLINE_NAME, request.provider)
    image = inspect_frame(_image_bytes(request), runtime.settings)
    provider = build_provider(spec, runtime.provider_deps)
    types = frozenset(request.detection_types or spec.detection_types)
    started = time.perf_counter()
    try:
        result = await provider.detect(image, types)
    except ProviderError as exc:
        report = _failure(spec, provider.capabilities().as_dict(), exc, started)
    else:
        report = ProviderTestReport(
            success=True, provider=spec.name, kind=spec.kind,
            latency_ms=round(result.latency_ms, 2), attempts=result.attempts,
            capabilities=provider.capabilities().as_dict(), model=result.model,
            found=[
                TestedObject(
                    type=o.type, label=o.label, confidence=round(o.confidence, 4),
                    bbox={"x_min": o.box.x_min, "y_min": o.box.y_min,
                          "x_max": o.box.x_max, "y_max": o.box.y_max},
                    subject=o.subject,
                )
                for o in result.objects
                if o.type in types and o.confidence >= spec.min_confidence
            ],
        )
    record_event(
        session, EventType.PROVIDER_TESTED,
        f"provider {spec.name!r} tested: {'ok' if report.success else 'failed'}",
        severity=Severity.INFO if report.success else Severity.WARNING, provider=spec.name,
        actor=actor,
        payload={"success": report.success, "latency_ms": report.latency_ms,
                 "found": len(report.found), "error": report.error},
    )
    await session.commit()
    return report


def _image_bytes(request: ProviderTestRequest) -> bytes:
    if request.image_base64 is None:
        from framewatch.detector import sample_frame

        return sample_frame()
    try:
        return base64.b64decode(request.image_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFrame("`image_base64` is not valid base64", field="image_base64") from None


def _failure(
    spec: ProviderSpec, capabilities: dict[str, object], exc: ProviderError, started: float
) -> ProviderTestReport:
    code = "provider_unavailable" if exc.retryable else "provider_error"
    return ProviderTestReport(
        success=False, provider=spec.name, kind=spec.kind,
        latency_ms=round((time.perf_counter() - started) * 1000, 2), attempts=exc.attempts,
        capabilities=capabilities,
        error={"error": code, "detail": exc.message, "status_code": exc.status_code},
    )


