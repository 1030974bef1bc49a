from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from framewatch.auth.dependencies import StatsReader
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS
from framewatch.queue.stats import queue_stats

router = APIRouter(tags=["observability"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **AUTH_ERRORS})
async def metrics(session: Session, runtime: RuntimeDep, _: StatsReader) -> Response:
    """Prometheus metrics of this process (scrape with a `stats:read` key as bearer token).
    docs/operations.md lists them."""
    stats = await queue_stats(session, runtime.dispatcher.name)
    for status, count in stats.counts.items():
        runtime.metrics.queue_items.labels(status).set(count)
    runtime.metrics.queue_oldest_pending.set(stats.oldest_pending_age_seconds or 0.0)
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
