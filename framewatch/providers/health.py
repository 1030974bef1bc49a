"""The `test_detection_provider` job: check every enabled provider and keep its breaker true.

The built-in detector is checked only while it is in use (the default provider, or a camera's):
it runs in the worker itself, so it cannot be "down" like a remote server, and its check is a
full detection pass — CPU that an installation using an external provider should not spend every
minute (measured: up to 18 % of a worker's CPU under load, docs/load-test.md).

A failed check opens the provider's circuit at once (`provider.down`); a passing check closes an
open one (`provider.recovered`). Events are written only on those changes, never per check.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select

from framewatch.models import Camera, DetectionProviderConfig
from framewatch.providers import breaker
from framewatch.providers.base import ConnectionReport
from framewatch.providers.builtin import BuiltinProvider
from framewatch.providers.registry import build_provider
from framewatch.providers.service import spec_from_config
from framewatch.runtime import Runtime


async def check_providers(runtime: Runtime) -> dict[str, Any]:
    async with runtime.session_factory() as session:
        configs = list(
            await session.scalars(
                select(DetectionProviderConfig)
                .where(DetectionProviderConfig.enabled.is_(True), _in_use_if_builtin())
                .order_by(DetectionProviderConfig.id)
            )
        )
    results: dict[str, Any] = {}
    for config in configs:
        report = await _check(runtime, config)
        async with runtime.session_factory() as session:
            await breaker.mark_checked(session, config.name)
            if report.ok:
                await breaker.record_success(session, config.name)
            else:
                await breaker.record_failure(
                    session, config.name, f"health check failed: {report.detail}",
                    runtime.breaker_policy, trip=True,
                )
            await session.commit()
        results[config.name] = {"ok": report.ok, "latency_ms": round(report.latency_ms, 1)}
    return {"checked": len(results), "providers": results}


def _in_use_if_builtin() -> ColumnElement[bool]:
    p = DetectionProviderConfig
    used_by_a_camera = select(Camera.id).where(Camera.provider_id == p.id).exists()
    return or_(p.kind != BuiltinProvider.kind, p.is_default.is_(True), used_by_a_camera)


async def _check(runtime: Runtime, config: DetectionProviderConfig) -> ConnectionReport:
    try:
        spec = spec_from_config(config, runtime.secret_box)
        provider = build_provider(spec, runtime.provider_deps)
    except ValueError as exc:  # options, key or a configuration the adapter refuses
        return ConnectionReport(ok=False, latency_ms=0.0, detail=str(exc))
    return await provider.test_connection()
