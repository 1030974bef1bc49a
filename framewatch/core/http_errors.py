"""Every error, whatever raised it, leaves as `{"error": code, "detail": text}`."""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framewatch.core.errors import FramewatchError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "request_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited",
}
# What FastAPI raises (as a 400) when a JSON body cannot even be decoded.
_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FramewatchError, _framewatch_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _integrity_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _database_busy)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(
    status: int, code: str, detail: str, extra: dict[str, Any] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503) and extra and "retry_after_seconds" in extra:
        headers = {"Retry-After": str(extra["retry_after_seconds"])}
    body = {**(extra or {}), "error": code, "detail": detail}
    return JSONResponse(body, status_code=status, headers=headers)


async def _framewatch_error(_: Request, exc: FramewatchError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.detail, exc.extra)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, f['loc']))}: {f['msg']}" for f in fields)
    return error_response(422, "validation_error", detail or "invalid request",
                          {"fields": fields})


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_ERROR:
        # FastAPI answers a JSON body that does not parse with 422, except when the bytes are
        # not UTF-8 or nest too deep: those are invalid JSON too, and answered the same way.
        return error_response(
            422, "validation_error", "body: the body is not valid JSON (UTF-8)",
            {"fields": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]},
        )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
    # Two requests raced for the same unique value; the loser learns it here.
    log.info("integrity error answered as 409: %s", exc.orig)
    return error_response(409, "conflict", "the change conflicts with the stored data")


async def _database_busy(_: Request, exc: PoolTimeout) -> JSONResponse:
    # Every connection of the pool stayed busy for FRAMEWATCH_DATABASE_POOL_TIMEOUT_SECONDS:
    # overload, not a fault of the request. Come back shortly (or to another instance).
    log.warning("no free database connection: %s", exc)
    return error_response(503, "database_busy",
                          "the database is busy; retry in a moment", {"retry_after_seconds": 1})


async def _client_gone(_: Request, __: ClientDisconnect) -> JSONResponse:
    # The client hung up while its body was being read: nobody will read this answer.
    return error_response(400, "client_disconnected", "the client closed the connection")


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred")


class RequestLimits:
    """Refuses request bodies over their limit with 413 (by header or while streaming), and
    bodies that are not JSON with 415 — except on the paths that take images (send-frame,
    face registration and search), which check their own content types and have the larger,
    frame-sized limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int,
                 image_paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        # Paths taking images (regular expressions): multipart allowed, frame-sized limit.
        self.image_paths = re.compile("|".join(f"(?:{p})" for p in image_paths))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        frames = self.image_paths.fullmatch(str(scope.get("path", ""))) is not None
        limit = self.max_bytes if frames else self.max_json_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = declared not in (None, b"0") or b"transfer-encoding" in headers
        if (not frames and has_body and scope["method"] in ("POST", "PUT", "PATCH")
                and content_type != b"application/json"):
            response = error_response(
                415, "unsupported_media_type",
                f"send the body as application/json, not {content_type.decode() or 'nothing'}",
            )
            await response(scope, receive, send)
            return
        received, too_large, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # FastAPI turns an error while reading the body into its own answer (400, or 422 as
            # invalid JSON): a body cut short for its size is answered 413 instead.
            if too_large and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with suppress(_BodyTooLarge):  # raised by limited_receive; answered just below
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not started:
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413, "request_too_large",
            f"the request body is larger than the limit of {limit} bytes",
            {"limit_bytes": limit},
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass
