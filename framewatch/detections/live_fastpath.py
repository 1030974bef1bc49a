"""`GET /api/v1/detections/live`, the common poll, answered before the middleware and routing.

Dashboards and integrations poll the live view many times a second. Every layer between uvicorn
and the endpoint (request id and metrics, security headers, rate limits, body limits, FastAPI's
exception handling, routing, request handling) costs a little on every poll, and together they
were most of a poll's CPU (docs/performance.md). This middleware, the outermost of framewatch's
own, answers a poll itself when it is the common case, with the parts those layers use: the
request id and the metrics (framewatch.observability), the security headers (framewatch.core.
headers), the rate limits (framewatch.core.ratelimit), the key check through the key cache
(framewatch.auth.dependencies), the query validated by `LiveFilters` and the view from
`cached_live_view`, as the route does.

Everything else goes down the normal stack, to the route of the same path, which answers it or
refuses it as for any endpoint: a key that is missing, unknown to the key cache or refused; a
query that does not validate, or names a camera outside the key's scope; a CORS request; a
request with a body; a refusal by the rate limiter (tokens taken here are not taken again:
`ratelimit.TAKEN`); a view that could not be built (the route tries again and reports the error).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from framewatch.auth.dependencies import granted_by_cache
from framewatch.auth.permissions import Permission
from framewatch.auth.service import Principal
from framewatch.core.context import RequestContext, current_request
from framewatch.core.headers import security_headers
from framewatch.core.ratelimit import TAKEN
from framewatch.detections.live import cached_live_view
from framewatch.detections.schemas import LiveFilters
from framewatch.detections.service import parse_types
from framewatch.observability.requests import HEADER, request_id_of
from framewatch.runtime import Runtime

LIVE_PATH = "/api/v1/detections/live"
# Requests that carry these go the normal way: CORS answers, body limits.
_NOT_COMMON = frozenset({b"origin", b"content-length", b"transfer-encoding"})
_JSON = (b"content-type", b"application/json")
_REQUEST_ID = HEADER.encode()


@dataclass(frozen=True, slots=True)
class LivePoll:
    principal: Principal
    camera_id: str | None
    types: list[str] | None


class LiveFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != LIVE_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
        poll = common_poll(scope, runtime) if runtime is not None else None
        if runtime is None or poll is None or not await self._answer(scope, send, runtime, poll):
            await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, send: Send, runtime: Runtime, poll: LivePoll) -> bool:
        """Answer the poll; False (nothing sent) when the normal stack must."""
        started = time.perf_counter()
        client = scope.get("client")
        request_id = request_id_of(scope)
        token = current_request.set(RequestContext(address=str(client[0]) if client else
                                                   "unknown", request_id=request_id))
        try:
            wait = await runtime.rate_limiter.check(scope)
            if wait > 0:
                scope[TAKEN] = wait
                return False
            scope[TAKEN] = 0.0
            try:
                data = await cached_live_view(runtime, poll.camera_id, poll.types,
                                              poll.principal.camera_scope)
            except Exception:  # the route builds it again, and answers and logs what fails
                return False
            await send({"type": "http.response.start", "status": 200, "headers": [
                _JSON, (b"content-length", str(len(data)).encode()), *security_headers(scope),
                (_REQUEST_ID, request_id.encode("latin-1"))]})
            await send({"type": "http.response.body", "body": data})
        finally:
            current_request.reset(token)
        runtime.metrics.observe_request(LIVE_PATH, "GET", 200, time.perf_counter() - started)
        return True


def common_poll(scope: Scope, runtime: Runtime) -> LivePoll | None:
    """What a common poll asks for; None when the normal stack must answer it."""
    authorization = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name in _NOT_COMMON:
            return None
    scheme, key = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not key:
        return None
    principal = granted_by_cache(runtime, key, Permission.DETECTIONS_READ)
    if principal is None:
        return None
    if not scope["query_string"]:
        return LivePoll(principal, None, None)
    try:
        filters = LiveFilters.model_validate(dict(QueryParams(scope["query_string"])))
    except ValidationError:
        return None
    if filters.camera_id is not None and not principal.sees_camera(filters.camera_id):
        return None
    return LivePoll(principal, filters.camera_id, parse_types(filters.types))
