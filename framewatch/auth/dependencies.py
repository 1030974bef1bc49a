"""Who may call what: `require(permission)` and one `Annotated` alias per permission.

Each route declares the one permission it needs by taking one of the aliases below; the
dependency keeps the permission on itself (`.permission`), which is how `docs/security.md`'s
table of endpoints is checked against the app.

A key is checked against the database at most every `FRAMEWATCH_AUTH_CACHE_SECONDS` per process
(so a revocation takes effect everywhere within that time, at once in the process that made it).
Failed authentications are written to the audit trail and rate-limited per client address;
refusals for a missing permission are audited too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from framewatch.auth.permissions import UNSCOPED_ONLY, Permission
from framewatch.auth.service import KeyCheck, Principal, check_key, hash_key
from framewatch.core.context import RequestContext, current_request
from framewatch.core.dependencies import get_runtime
from framewatch.core.errors import Forbidden, FramewatchError, RateLimited, Unauthorized
from framewatch.events.service import EventType, Severity, record_event
from framewatch.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate_key(runtime: Runtime, key: str) -> KeyCheck:
    """Check `key`, through this process's short-lived cache."""
    digest = hash_key(key)
    cached = runtime.key_cache.get(digest)
    if cached is not None:
        return cached
    async with runtime.session_factory() as session:
        check = await check_key(session, key)
        await session.commit()
    runtime.key_cache.put(digest, check)
    return check


async def audit_refusal(
    runtime: Runtime, event_type: EventType, message: str, payload: dict[str, object]
) -> None:
    """Write an auth failure to the audit trail, in its own transaction (the request's rolls
    back). Never the key itself: only the name of the key it matched, if any."""
    async with runtime.session_factory() as session:
        record_event(session, event_type, message, severity=Severity.WARNING, payload=payload)
        await session.commit()


def require(permission: Permission) -> Callable[..., AsyncIterator[Principal]]:
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AsyncIterator[Principal]:
        runtime = get_runtime(request)
        principal = await _authorize(request, runtime, credentials, permission)
        if not permission.value.endswith(":admin"):
            yield principal
            return
        try:
            yield principal
        except (FramewatchError, RequestValidationError) as exc:
            # Admin actions are audited when they fail too (success: by the action's own event).
            code = exc.code if isinstance(exc, FramewatchError) else "validation_error"
            await audit_refusal(
                runtime, EventType.ADMIN_FAILED,
                f"{request.method} {request.url.path} by key {principal.name!r} failed ({code})",
                {"address": client_address(request), "method": request.method,
                 "path": request.url.path, "key_name": principal.name,
                 "permission": permission.value, "error": code, "outcome": "failed"},
            )
            raise

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


async def _authorize(
    request: Request, runtime: Runtime, credentials: HTTPAuthorizationCredentials | None,
    permission: Permission,
) -> Principal:
    address = client_address(request)
    current_request.set(RequestContext(address=address,
                                       request_id=current_request.get().request_id))
    where = {"address": address, "method": request.method, "path": request.url.path}
    key = credentials.credentials if credentials is not None else ""
    check = await authenticate_key(runtime, key) if key else KeyCheck(None, "missing")
    if check.principal is None:
        wait = await runtime.rate_limiter.failed_authentication(address)
        if wait > 0:
            raise RateLimited(wait, "too many failed authentications from this address")
        await audit_refusal(
            runtime, EventType.AUTH_FAILED,
            f"authentication failed ({check.reason}) from {address}",
            {**where, "reason": check.reason, "key_name": check.key_name, "outcome": "refused"},
        )
        if check.reason == "missing":
            raise Unauthorized("an API key is required: `Authorization: Bearer <key>`")
        raise Unauthorized("the API key is unknown, revoked or expired")
    principal = check.principal
    if not principal.allows(permission):
        await audit_refusal(
            runtime, EventType.AUTH_DENIED,
            f"key {principal.name!r} lacks {permission.value} for {request.url.path}",
            {**where, "key_name": principal.name, "role": principal.role.value,
             "permission": permission.value, "outcome": "denied"},
        )
        raise Forbidden(
            f"this needs the {permission.value} permission, which the "
            f"{principal.role.value} role does not have",
            required_permission=permission.value,
        )
    if permission in UNSCOPED_ONLY and principal.camera_scope is not None:
        await audit_refusal(
            runtime, EventType.AUTH_DENIED,
            f"key {principal.name!r} is limited to cameras: no {permission.value} for "
            f"{request.url.path}",
            {**where, "key_name": principal.name, "role": principal.role.value,
             "permission": permission.value, "reason": "camera_scope", "outcome": "denied"},
        )
        raise Forbidden(
            f"{permission.value} reaches every camera: it needs a key not limited to cameras",
            required_permission=permission.value, reason="camera_scope",
        )
    return principal


DetectionsReader = Annotated[Principal, Depends(require(Permission.DETECTIONS_READ))]
FramesReader = Annotated[Principal, Depends(require(Permission.FRAMES_READ))]
FrameSender = Annotated[Principal, Depends(require(Permission.FRAMES_WRITE))]
EventsReader = Annotated[Principal, Depends(require(Permission.EVENTS_READ))]
StatsReader = Annotated[Principal, Depends(require(Permission.STATS_READ))]
CamerasReader = Annotated[Principal, Depends(require(Permission.CAMERAS_READ))]
CamerasAdmin = Annotated[Principal, Depends(require(Permission.CAMERAS_ADMIN))]
ProvidersReader = Annotated[Principal, Depends(require(Permission.PROVIDERS_READ))]
ProvidersAdmin = Annotated[Principal, Depends(require(Permission.PROVIDERS_ADMIN))]
QueueAdmin = Annotated[Principal, Depends(require(Permission.QUEUE_ADMIN))]
KeysAdmin = Annotated[Principal, Depends(require(Permission.KEYS_ADMIN))]
PersonsReader = Annotated[Principal, Depends(require(Permission.PERSONS_READ))]
PersonsAdmin = Annotated[Principal, Depends(require(Permission.PERSONS_ADMIN))]
RetentionAdmin = Annotated[Principal, Depends(require(Permission.RETENTION_ADMIN))]
WebhooksAdmin = Annotated[Principal, Depends(require(Permission.WEBHOOKS_ADMIN))]
