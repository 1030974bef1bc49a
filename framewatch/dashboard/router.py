"""Serves the dashboard: `/` is its page, `/dashboard/…` its scripts, styles and icon.

Plain Starlette routes, not API routes: they need no key and no permission, are not part of the
OpenAPI schema, and answer only GET and HEAD. Every response gets the app's strict content
security policy (`framewatch.core.headers`): the page loads its scripts and styles from its own
origin only, and shows frames as `blob:` URLs fetched with the key.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PREFIX = "/dashboard"
# Revalidate on every load (cheap: ETag / Last-Modified), so that an upgrade shows at once.
NO_CACHE = {"cache-control": "no-cache"}


class _Assets(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(NO_CACHE)
        return response


async def index(_: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=NO_CACHE)


router = Router(routes=[
    Route("/", index, methods=["GET"], include_in_schema=False),
    Mount(ASSETS_PREFIX, app=_Assets(directory=STATIC_DIR), name="dashboard"),
])
