"""Every HTTP request gets an id — the caller's `X-Request-ID` when it is sane, else a new one —
that is answered back, put on every log line and event of the request, carried into the queue
item a frame becomes and into the worker that runs it. And every request is counted and timed
by route (the route's template, never the raw path: ids in paths would explode the metrics)."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framewatch.core.context import RequestContext, current_request

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if _SANE.match(given) else new_request_id()
        address = (scope.get("client") or (None, 0))[0]
        token = current_request.set(RequestContext(address=address, request_id=request_id))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request.reset(token)
            if scope["type"] == "http":
                self._observe(scope, status, time.perf_counter() - started)

    @staticmethod
    def _observe(scope: Scope, status: int, seconds: float) -> None:
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        if runtime is None:
            return
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "GET")
        runtime.metrics.http_requests.labels(route, method, str(status)).inc()
        runtime.metrics.http_latency.labels(route, method).observe(seconds)
