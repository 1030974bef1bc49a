"""Liveness and readiness, open to anyone (no key): load balancers and orchestrators call them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from framewatch.core.dependencies import RuntimeDep
from framewatch.core.openapi import RATE_LIMITED

router = APIRouter(tags=["health"])


@router.get("/healthz", responses=RATE_LIMITED)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is unreachable."},
                                   **RATE_LIMITED})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    """The database answers, and Redis too when it is configured."""
    checks: dict[str, str] = {}
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except (SQLAlchemyError, OSError) as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if runtime.settings.redis_url:
        try:
            await runtime.cache.backend.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # any failure of the client means "not ready"
            checks["redis"] = f"error: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(name for name, value in checks.items() if value != "ok")
    return JSONResponse(
        {"error": "not_ready", "detail": f"unreachable: {failing}", "checks": checks},
        status_code=503,
    )
