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

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from framewatch.auth.keycache import KeyCache
from framewatch.auth.permissions import UNSCOPED_ONLY, Permission
from framewatch.auth.service import KeyCheck, Principal, check_key, hash_key
from framewatch.core.context import RequestContext, current_request
from framewatch.core.dependencies import get_runtime
from framewatch.core.errors import Forbidden, FramewatchError, RateLimited, Unauthorized
from framewatch.events.service import EventType, Severity, record_event
from framewatch.runtime import Runtime

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def client_address(request: Request) -> str:
    # From the scope: `request.client` builds a named tuple on every call.
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


async def authenticate_key(runtime: Runtime, key: str) -> KeyCheck:
    """Check `key`, through this process's short-lived cache."""
    cache = runtime.key_cache
    digest = hash_key(key)
    cached = cache.get(digest)
    if cached is not None:
        return cached
    check = cache.checking.get(digest)
    if check is None:  # else another request is checking this key: its answer is ours too
        check = asyncio.create_task(_check_in_database(runtime, key, digest))
        cache.checking[digest] = check
        check.add_done_callback(lambda task: _checked(cache, digest, task))
    # shield: a request that goes away stops waiting; the check goes on for the others.
    return await asyncio.shield(check)


def refusal(principal: Principal, permission: Permission) -> Literal["permission", "scope"] | None:
    """Why a known key may not use `permission`: its role lacks it ("permission"), or the
    permission reaches every camera and the key is limited to some ("scope"); None: it may."""
    if not principal.allows(permission):
        return "permission"
    if permission in UNSCOPED_ONLY and principal.camera_scope is not None:
        return "scope"
    return None


def granted_by_cache(runtime: Runtime, key: str, permission: Permission) -> Principal | None:
    """The key's principal when this process's key cache already knows the key and `_authorize`
    would let it through for `permission`; None in every other case (unknown to the cache,
    refused: `_authorize` decides, and audits a refusal)."""
    check = runtime.key_cache.get(hash_key(key))
    principal = check.principal if check is not None else None
    if principal is None or refusal(principal, permission) is not None:
        return None
    return principal


async def _check_in_database(runtime: Runtime, key: str, digest: str) -> KeyCheck:
    async with runtime.session_factory() as session:
        check = await check_key(session, key)
        await session.commit()
    runtime.key_cache.put(digest, check)
    return check


def _checked(cache: KeyCache, digest: str, task: asyncio.Task[KeyCheck]) -> None:
    cache.checking.pop(digest, None)
    if not task.cancelled():
        task.exception()  # retrieved, in case every waiter went away


async def audit_refusal(
    runtime: Runtime, event_type: EventType, message: str, payload: dict[str, object]
) -> None:
    """Write an auth failure to the audit trail, in its own transaction (the request's rolls
    back). Never the key itself: only the name of the key it matched, if any."""
    async with runtime.session_factory() as session:
        record_event(session, event_type, message, severity=Severity.WARNING, payload=payload)
        await session.commit()


def require(permission: Permission) -> Callable[..., Any]:
    if not permission.value.endswith(":admin"):
        # A plain coroutine, not a generator: FastAPI wraps generator dependencies in an exit
        # stack, which costs every request more than the key check itself.
        async def dependency(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            key = credentials.credentials if credentials is not None else ""
            return await _authorize(request, get_runtime(request), key, permission)

        dependency.permission = permission  # type: ignore[attr-defined]
        return dependency

    async def admin_dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AsyncIterator[Principal]:
        runtime = get_runtime(request)
        key = credentials.credentials if credentials is not None else ""
        principal = await _authorize(request, runtime, key, permission)
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

    admin_dependency.permission = permission  # type: ignore[attr-defined]
    return admin_dependency


def authorizes(permission: Permission) -> Callable[[_Endpoint], _Endpoint]:
    """Marks an endpoint that checks `permission` itself (with `authorize`) instead of taking
    one of the aliases below; the permission catalogue reads the mark."""
    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.permission = permission  # type: ignore[attr-defined]
        return endpoint
    return mark


async def authorize(request: Request, permission: Permission) -> Principal:
    """What the aliases below do, as a plain call, for the one endpoint polled so often that
    FastAPI's dependency solving is most of its cost (`GET /api/v1/detections/live`). Reads
    the bearer key as `HTTPBearer` does."""
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    key = key if scheme.lower() == "bearer" else ""
    return await _authorize(request, get_runtime(request), key, permission)


async def _authorize(
    request: Request, runtime: Runtime, key: str, permission: Permission
) -> Principal:
    address = client_address(request)
    current_request.set(RequestContext(address=address,
                                       request_id=current_request.get().request_id))
    check = await authenticate_key(runtime, key) if key else KeyCheck(None, "missing")

    def where() -> dict[str, object]:  # for the audit trail; built only when refusing
        return {"address": address, "method": request.method, "path": request.url.path}

    if check.principal is None:
        wait = await runtime.rate_limiter.failed_authentication(address)
        if wait > 0:
            raise RateLimited(wait, "too many failed authentications from this address")
        await audit_refusal(
            runtime, EventType.AUTH_FAILED,
            f"authentication failed ({check.reason}) from {address}",
            {**where(), "reason": check.reason, "key_name": check.key_name, "outcome": "refused"},
        )
        if check.reason == "missing":
            raise Unauthorized("an API key is required: `Authorization: Bearer <key>`")
        raise Unauthorized("the API key is unknown, revoked or expired")
    principal = check.principal
    why = refusal(principal, permission)
    if why == "permission":
        await audit_refusal(
            runtime, EventType.AUTH_DENIED,
            f"key {principal.name!r} lacks {permission.value} for {request.url.path}",
            {**where(), "key_name": principal.name, "role": principal.role.value,
             "permission": permission.value, "outcome": "denied"},
        )
        raise Forbidden(
            f"this needs the {permission.value} permission, which the "
            f"{principal.role.value} role does not have",
            required_permission=permission.value,
        )
    if why == "scope":
        await audit_refusal(
            runtime, EventType.AUTH_DENIED,
            f"key {principal.name!r} is limited to cameras: no {permission.value} for "
            f"{request.url.path}",
            {**where(), "key_name": principal.name, "role": principal.role.value,
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
