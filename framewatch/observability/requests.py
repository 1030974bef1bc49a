"""Every HTTP request gets an id — the caller's `X-Request-ID` when it is sane, else a new one —
that is answered back, put on every log line and event of the request, carried into the queue
item a frame becomes and into the worker that runs it. And every request is counted and timed
by route (the route's template, never the raw path: ids in paths would explode the metrics)."""

from __future__ import annotations

import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framewatch.core.context import RequestContext, current_request

HEADER = "x-request-id"
_HEADER = HEADER.encode()
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    # 128 random bits, like a UUID4's hex; `random` rather than `os.urandom` (a system call per
    # request): an id must be unique, not unguessable, and `random` reseeds in forked children.
    return f"{random.getrandbits(128):032x}"


def request_id_of(scope: Scope) -> str:
    """The caller's `X-Request-ID` when it is sane, else a new id."""
    given = next((value for name, value in scope.get("headers") or () if name == _HEADER),
                 b"").decode("latin-1")
    return given if _SANE.match(given) else new_request_id()


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        answered = (_HEADER, request_id.encode("latin-1"))
        address = (scope.get("client") or (None, 0))[0]
        token = current_request.set(RequestContext(address=address, request_id=request_id))
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*(header for header in message.get("headers") or ()
                                        if header[0] != _HEADER), answered]
            await send(message)

        # A WebSocket's messages go straight out: a wrapper would run for every message to
        # every client (it has no response head to add the id to).
        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
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
        runtime.metrics.observe_request(route, method, status, seconds)
