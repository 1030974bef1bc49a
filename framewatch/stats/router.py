from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from framewatch.auth.dependencies import StatsReader
from framewatch.core.database import utcnow
from framewatch.core.dependencies import RuntimeDep
from framewatch.core.errors import BadRequest
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.core.pagination import in_utc, refuse_nul
from framewatch.stats.queries import statistics
from framewatch.stats.schemas import Statistics

router = APIRouter(prefix="/api/v1/detections", tags=["statistics"])

CACHE_STATS = "stats"
MAX_RANGE = timedelta(days=400)


@router.get("/statistics", response_model=Statistics,
            responses={**AUTH_ERRORS, **error_responses(400)})
async def get_statistics(
    runtime: RuntimeDep,
    principal: StatsReader,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    camera_id: Annotated[str | None, Query(max_length=64)] = None,
    bucket: Literal["hour", "day"] = "hour",
) -> Statistics:
    """Totals by type, label and camera, a time series, confidence, provider latency and
    errors, queue throughput and cache hit rates, for a time range (default: the last 24 h).

    Read from hourly and daily roll-ups (refreshed every `FRAMEWATCH_STATS_INTERVAL_SECONDS`)
    and cached for `FRAMEWATCH_STATS_TTL_SECONDS`.
    """
    refuse_nul("camera_id", camera_id)
    if camera_id is not None:
        principal.check_camera(camera_id)
    scope = principal.camera_scope
    now = utcnow()
    end = in_utc("until", until) or now
    start = in_utc("since", since) or end - timedelta(hours=24)
    if start >= end:
        raise BadRequest("since must be before until", field="since")
    if end - start > MAX_RANGE:
        raise BadRequest(f"the range may span at most {MAX_RANGE.days} days", field="since")
    # Explicit ends are part of the key; an open end (now) is keyed by the minute, so open-ended
    # ranges share one entry per minute. The camera is quoted: `camera_id=*` is not "all".
    first = start.isoformat() if since else "24h"
    last = end.isoformat() if until else f"now@{now:%Y-%m-%dT%H:%M}"
    cameras = json.dumps([camera_id, sorted(scope) if scope is not None else None])
    key = f"{hashlib.sha256(cameras.encode()).hexdigest()[:32]}:{bucket}:{first}/{last}"


    async def build() -> dict[str, object]:
        # Its own session, opened only on a miss; requests that miss the same key meanwhile
        # wait for this one rebuild (single flight) instead of each summing the roll-ups.
        async with runtime.session_factory() as session:
            answer = await statistics(session, since=start, until=end, camera_id=camera_id,
                                      bucket=bucket, cache=runtime.cache.stats(),
                                      camera_scope=scope)
        return answer.model_dump(mode="json")

    return Statistics.model_validate(await runtime.cache.get_or_build(
        CACHE_STATS, key, build, runtime.settings.stats_ttl_seconds))
