"""`GET /api/v1/detections/live` from the cache: the same answer for every poller for up to
`FRAMEWATCH_LIVE_TTL_SECONDS`, rebuilt from the database on a miss. New detections for a camera
bump its generation (framewatch.live.feed), which is part of the key, so nobody is served a view
older than the newest processed frame.

A miss is rebuilt once per process however many polls miss at the same time (the cache's
single-flight `get_or_build_at_generation`); the rebuild opens its own database session, and a
hit opens none. With Redis, a hit is one round trip: the generation and the entry are read
together."""

from __future__ import annotations

import hashlib
import json

from framewatch.detections.queries import live_view
from framewatch.live.feed import ALL_CAMERAS, CACHE_LIVE
from framewatch.runtime import Runtime


async def cached_live_view(
    runtime: Runtime, camera_id: str | None, types: list[str] | None,
    camera_scope: frozenset[str] | None = None,
) -> bytes:
    """The live view as JSON bytes (only the cameras of `camera_scope`, when given)."""
    # The filter itself, unambiguously: `camera_id=*` (no camera) is not the all-cameras view.
    scope = sorted(camera_scope) if camera_scope is not None else None
    key = json.dumps([camera_id, types or [], scope], separators=(",", ":"))
    if len(key) > 200:  # a key scoped to many cameras: a digest of it
        key = hashlib.sha256(key.encode()).hexdigest()

    async def build() -> bytes:
        async with runtime.session_factory() as session:
            view = await live_view(session, window_seconds=runtime.settings.live_window_seconds,
                                   camera_id=camera_id, types=types, camera_scope=camera_scope)
        return view.model_dump_json().encode()

    return await runtime.cache.get_or_build_at_generation(
        CACHE_LIVE, camera_id or ALL_CAMERAS, key, build, runtime.settings.live_ttl_seconds)
