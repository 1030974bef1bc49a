"""Security headers on every HTTP response, and CORS when origins are configured.

The API and its dashboard are same-origin by default: without `FRAMEWATCH_CORS_ORIGINS`, no
cross-origin browser request is allowed. The interactive docs (`/docs`, `/redoc`) load their
scripts from a CDN, so their content security policy allows it; every other response allows only
the service's own origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = ("/docs", "/redoc")
STRICT_CSP = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; "
              "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'")
COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


_STRICT = [(name.encode(), value.encode()) for name, value in
           {**COMMON, "content-security-policy": STRICT_CSP}.items()]
_DOCS = [(name.encode(), value.encode()) for name, value in
         {**COMMON, "content-security-policy": DOCS_CSP}.items()]
_HSTS = [(b"strict-transport-security", b"max-age=31536000")]


def security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers every response to this request gets (encoded once, at import)."""
    added = _DOCS if str(scope.get("path", "")).startswith(DOCS_PATHS) else _STRICT
    return added + _HSTS if scope.get("scheme") == "https" else added


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Added to every response, where a route set none of its own.
        added = security_headers(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                headers += [header for header in added if header[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
