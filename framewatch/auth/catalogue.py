"""Which permission each endpoint needs, read off the app itself (for docs/security.md and the
test that keeps that document true)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

OPEN = "none (open)"
WEBSOCKET = "WEBSOCKET"
# The WebSocket authenticates inside the connection (`framewatch.live.ws`), not by dependency.
WEBSOCKET_PERMISSION = "detections:read (events also events:read)"


def endpoint_permissions(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, permission) for every route, sorted by path then method."""
    rows = []
    for route in _routes(app.router.routes):
        if isinstance(route, APIRoute):
            marked = getattr(route.endpoint, "permission", None)  # `authorizes(...)`
            permission = (str(marked.value) if marked is not None
                          else _permission(route.dependant) or OPEN)
            rows += [(method, route.path, permission) for method in route.methods or ()]
        elif isinstance(route, APIWebSocketRoute):
            rows.append((WEBSOCKET, route.path, WEBSOCKET_PERMISSION))
    return sorted(set(rows), key=lambda row: (row[1], row[0]))


def _routes(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        else:
            yield route


def _permission(dependant: Dependant) -> str | None:
    for dependency in dependant.dependencies:
        permission = getattr(dependency.call, "permission", None)
        if permission is not None:
            return str(permission.value)
        found = _permission(dependency)
        if found:
            return found
    return None
