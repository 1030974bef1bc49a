"""The FastAPI application: routers, error handlers, and the lifespan that owns the runtime."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from framewatch import __version__
from framewatch.auth.router import router as keys_router
from framewatch.auth.service import AdminKeyBootstrap, ensure_admin_key
from framewatch.cameras.router import router as cameras_router
from framewatch.core import migrate
from framewatch.core.config import Settings
from framewatch.core.headers import SecurityHeaders
from framewatch.core.health import router as health_router
from framewatch.core.http_errors import RequestLimits, install_error_handlers
from framewatch.core.openapi import document_body_errors
from framewatch.core.ratelimit import SEND_FRAME_PATH, RateLimitMiddleware
from framewatch.dashboard import router as dashboard_router
from framewatch.detections.live_fastpath import LiveFastPath
from framewatch.detections.router import hot_router as hot_detections_router
from framewatch.detections.router import router as detections_router
from framewatch.events.router import router as events_router
from framewatch.frames.router import router as frames_router
from framewatch.live.ws import router as live_router
from framewatch.observability.requests import RequestObservability
from framewatch.observability.router import router as metrics_router
from framewatch.persons.router import router as persons_router
from framewatch.providers.router import router as providers_router
from framewatch.providers.service import ensure_default_provider
from framewatch.queue.dispatch import LocalDispatcher
from framewatch.queue.inprocess import InProcessWorker
from framewatch.queue.router import router as queue_router
from framewatch.retention.router import router as retention_router
from framewatch.runtime import Runtime
from framewatch.stats.router import router as stats_router
from framewatch.webhooks.router import router as webhooks_router

log = logging.getLogger("framewatch")


class SchemaNotMigrated(RuntimeError):
    pass


async def start_runtime(settings: Settings) -> tuple[Runtime, AdminKeyBootstrap]:
    """Open the runtime, check the schema is current, and make sure an admin can log in."""
    runtime = Runtime.create(settings)
    try:
        current, head = await migrate.current_revision(runtime.engine), migrate.head_revision()
        if current != head:
            raise SchemaNotMigrated(
                f"the database is at revision {current or 'none'}, the code needs {head}: "
                "run `framewatch migrate` first"
            )
        async with runtime.session_factory() as session:
            bootstrap = await ensure_admin_key(session, settings)
            await ensure_default_provider(session)
            await session.commit()
    except BaseException:
        await runtime.close()
        raise
    return runtime, bootstrap


# Endpoints that take images: multipart (or send-frame's base64 JSON) up to the frame limit.
IMAGE_PATHS = (re.escape(SEND_FRAME_PATH), r"/api/v1/persons/\d+/faces", r"/api/v1/persons/search")


def start_inprocess_worker(runtime: Runtime) -> InProcessWorker | None:
    """Without a broker, this process runs the queue and the periodic jobs itself."""
    if not isinstance(runtime.dispatcher, LocalDispatcher):
        return None
    worker = InProcessWorker(runtime, runtime.dispatcher.wake)
    worker.start()
    return worker


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime, bootstrap = await start_runtime(settings)
        app.state.runtime = runtime
        app.state.admin_key = bootstrap
        await runtime.live.start()
        runtime.mqtt.start()  # connects in the background; a no-op without FRAMEWATCH_MQTT_URL
        worker = start_inprocess_worker(runtime)
        # Load the detector's weights now, off the event loop, not on the first frame.
        warm_up = asyncio.create_task(runtime.warm_up_detector_if_used())
        demo = None
        try:
            if settings.demo:  # `make run`: a camera fed from frames shipped with framewatch
                from framewatch.agent.demo import start_demo_camera

                demo = await start_demo_camera(app, runtime.session_factory)
            yield
        finally:
            if demo is not None:
                await demo.stop()
            if worker is not None:
                await worker.stop(settings.shutdown_grace_seconds)
            await warm_up
            await runtime.close()

    app = FastAPI(
        title="framewatch",
        version=__version__,
        summary="Frames in, detections out: a detection-integration service for camera systems.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    document_body_errors(app)  # RequestLimits' 413 and 415, on every operation with a body
    app.add_middleware(RequestLimits, max_bytes=settings.max_request_bytes,
                       max_json_bytes=settings.max_json_bytes, image_paths=IMAGE_PATHS)
    # Added last, so it runs first: a refused request costs no body read.
    app.add_middleware(RateLimitMiddleware)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"], max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    # Outermost: the request id and the timing cover everything, refusals included.
    app.add_middleware(RequestObservability)
    # Before all of it, the common poll of the live view is answered with the same parts,
    # without the layers' cost; everything else goes on down (framewatch/detections/live_fastpath).
    app.add_middleware(LiveFastPath)
    # The queue, events, statistics and WebSocket routes share the /api/v1/detections prefix
    # and must match before `/detections/{detection_id}`; send-frame and the live view first
    # of all (FastAPI tries the routes in order).
    for router in (hot_detections_router, health_router, queue_router, events_router,
                   stats_router, live_router, detections_router, providers_router,
                   cameras_router, frames_router, keys_router, retention_router,
                   persons_router, metrics_router, webhooks_router):
        app.include_router(router)
    # The dashboard's page and static files: public, not API routes (framewatch/dashboard).
    app.router.routes.extend(dashboard_router.routes)
    return app
