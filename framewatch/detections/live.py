"""`GET /api/v1/detections/live` from the cache: the same answer for every poller for up to
`FRAMEWATCH_LIVE_TTL_SECONDS`, rebuilt from the database on a miss. New detections for a camera
bump its generation (framewatch.live.feed), which is part of the key, so nobody is served a view
older than the newest processed frame."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.detections.queries import live_view
from framewatch.live.feed import ALL_CAMERAS, CACHE_LIVE
from framewatch.runtime import Runtime


async def cached_live_view(
    session: AsyncSession, runtime: Runtime, camera_id: str | None, types: list[str] | None
) -> bytes:
    """The live view as JSON bytes."""
    scope = camera_id or ALL_CAMERAS
    generation = await runtime.cache.generation(CACHE_LIVE, scope)
    # The filter itself, unambiguously: `camera_id=*` (no camera) is not the all-cameras view.
    key = json.dumps([camera_id, generation, types or []], separators=(",", ":"))
    cached = await runtime.cache.get_bytes(CACHE_LIVE, key)
    if cached is not None:
        return cached
    view = await live_view(session, window_seconds=runtime.settings.live_window_seconds,
                          camera_id=camera_id, types=types)
    data = view.model_dump_json().encode()
    await runtime.cache.set_bytes(CACHE_LIVE, key, data, runtime.settings.live_ttl_seconds)
    return data
