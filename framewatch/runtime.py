"""The process's shared resources, made once in the app lifespan (or by a CLI command)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framewatch.auth.keycache import KeyCache
from framewatch.core.config import Settings
from framewatch.core.database import create_engine, create_session_factory
from framewatch.core.ratelimit import RateLimiter, RateLimits, create_rate_limiter, limit
from framewatch.core.secrets import SecretBox, load_secret_box
from framewatch.detector.detector import BuiltinDetector
from framewatch.frames.storage import FrameStore
from framewatch.live.bus import create_log
from framewatch.live.cache import LiveCache, create_cache
from framewatch.live.feed import LiveFeed
from framewatch.live.outbox import outbox_session_class
from framewatch.mqtt.metrics import mqtt_metrics
from framewatch.mqtt.publisher import MqttPublisher
from framewatch.observability.metrics import Metrics, cache_metrics, websocket_metrics
from framewatch.persons.crops import FaceStore
from framewatch.persons.index import GalleryIndex
from framewatch.providers.base import ProviderDeps
from framewatch.providers.breaker import BreakerPolicy
from framewatch.providers.urls import ProviderAddressPolicy, pinned_transport
from framewatch.queue.dispatch import CeleryDispatcher, Dispatcher, LocalDispatcher
from framewatch.queue.service import QueuePolicy, RetryPolicy
from framewatch.webhooks.capture import CaptureOptions
from framewatch.webhooks.capture import install as capture_committed
from framewatch.webhooks.runner import WebhookState


@functools.lru_cache(maxsize=2)
def load_builtin_detector(face_encodings: bool) -> BuiltinDetector:
    # Model weights are immutable and take a second to load: one copy per process, on first use.
    return BuiltinDetector(face_encodings=face_encodings)


log = logging.getLogger(__name__)

@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    http_client: httpx.AsyncClient
    cache: LiveCache
    live: LiveFeed
    frame_store: FrameStore
    face_store: FaceStore
    provider_deps: ProviderDeps
    dispatcher: Dispatcher
    queue_policy: QueuePolicy
    breaker_policy: BreakerPolicy
    rate_limiter: RateLimiter
    key_cache: KeyCache
    gallery: GalleryIndex
    metrics: Metrics
    provider_policy: ProviderAddressPolicy
    # Webhooks and MQTT (framewatch/webhooks, framewatch/mqtt).
    webhooks: WebhookState
    mqtt: MqttPublisher

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.resolved_database_url,
                               pool_size=settings.database_pool_size,
                               max_overflow=settings.database_pool_size,
                               pool_timeout=settings.database_pool_timeout_seconds)
        provider_policy = ProviderAddressPolicy.from_settings(
            settings.provider_allow_private_networks, settings.provider_allowed_hosts or ""
        )
        # Every outgoing provider request is checked, after DNS, against the address policy,
        # and connects only to an address that passed it.
        http_client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False,
            transport=pinned_transport(provider_policy, httpx.Limits(max_connections=100)),
            event_hooks={"request": [provider_policy.httpx_hook]},
        )

        def detector() -> BuiltinDetector:
            return load_builtin_detector(settings.builtin_face_encodings)

        cache = create_cache(settings.redis_url)
        live = LiveFeed(create_log(settings.redis_url, settings.ws_replay_messages,
                                   settings.ws_buffer_messages), cache)
        session_class = outbox_session_class(live.outbox)
        sessions = create_session_factory(engine, session_class)
        gallery = GalleryIndex(sessions, settings.face_match_threshold,
                               settings.gallery_check_seconds)
        live.outbox.person_names = gallery.known_names
        # Committed detections and events become webhook deliveries (same transaction) and
        # MQTT messages (after the commit).
        mqtt_publisher = MqttPublisher(settings)
        capture_committed(session_class, CaptureOptions(
            max_attempts=lambda: settings.webhook_max_attempts,
            person_names=gallery.known_names,
            after_commit=mqtt_publisher.offer if mqtt_publisher.enabled else None,
        ))
        metrics = _metrics(cache, live)
        metrics.watch(mqtt_metrics(mqtt_publisher.stats))
        return cls(
            settings=settings,
            engine=engine,
            session_factory=sessions,
            gallery=gallery,
            metrics=metrics,
            secret_box=load_secret_box(settings),
            http_client=http_client,
            cache=cache,
            live=live,
            frame_store=FrameStore(settings.frames_dir),
            face_store=FaceStore(settings.data_dir / "faces"),
            provider_deps=ProviderDeps(http_client=http_client, builtin_detector=detector),
            dispatcher=_dispatcher(settings),
            queue_policy=QueuePolicy(
                lease=timedelta(seconds=settings.queue_lease_seconds),
                retry=RetryPolicy(
                    max_attempts=settings.queue_max_attempts,
                    base_seconds=settings.queue_retry_base_seconds,
                    max_seconds=settings.queue_retry_max_seconds,
                ),
                redispatch_after=timedelta(seconds=settings.queue_redispatch_seconds),
            ),
            provider_policy=provider_policy,
            webhooks=WebhookState.from_settings(settings, provider_policy),
            mqtt=mqtt_publisher,
            key_cache=KeyCache(settings.auth_cache_seconds),
            rate_limiter=create_rate_limiter(settings.redis_url, _rate_limits(settings)),
            breaker_policy=BreakerPolicy(
                failure_threshold=settings.breaker_failure_threshold,
                cooldown=timedelta(seconds=settings.breaker_cooldown_seconds),
                probe_timeout=timedelta(seconds=max(60.0, settings.queue_lease_seconds)),
            ),
        )

    async def warm_up_detector(self) -> None:
        """Load the built-in detector's weights and run it once on the sample frame, off the
        event loop, so that the first real frame does not pay for either."""
        from framewatch.detector.detector import decode_image
        from framewatch.detector.weights import sample_frame
        from framewatch.providers.base import STANDARD_TYPES

        def warm() -> None:
            image = decode_image(sample_frame())
            if image is not None:
                self.provider_deps.builtin_detector().detect(image, STANDARD_TYPES, 0.5)

        await asyncio.to_thread(warm)

    async def warm_up_detector_if_used(self) -> None:
        """Load the built-in detector's weights off the event loop when an enabled provider
        (or the fallback) is the built-in one; a load failure is reported on first use. Only a
        head start: if the database cannot say (busy, down), the weights load on first use."""
        from framewatch.detector.weights import DetectorUnavailable
        from framewatch.models import DetectionProviderConfig

        try:
            async with self.session_factory() as session:
                kinds = set(await session.scalars(
                    select(DetectionProviderConfig.kind)
                    .where(DetectionProviderConfig.enabled.is_(True))
                ))
        except SQLAlchemyError as exc:
            log.warning("detector warm-up skipped: the providers could not be read (%s)", exc)
            return
        if kinds and "builtin" not in kinds:
            return
        with contextlib.suppress(DetectorUnavailable):
            await self.warm_up_detector()

    @property
    def uses_broker(self) -> bool:
        return isinstance(self.dispatcher, CeleryDispatcher)

    async def close(self) -> None:
        await self.live.close()
        await asyncio.to_thread(self.mqtt.close)
        await self.webhooks.close()
        await self.rate_limiter.close()
        await self.http_client.aclose()
        await self.cache.close()  # its rebuilds in flight, then the backend
        await self.engine.dispose()


def _dispatcher(settings: Settings) -> Dispatcher:
    if settings.broker_url:
        from framewatch.queue.celery_app import create_celery

        return CeleryDispatcher(create_celery(settings, set_as_current=False))
    return LocalDispatcher()


def _rate_limits(settings: Settings) -> RateLimits:
    burst = settings.rate_limit_burst_seconds
    return RateLimits(
        per_key=limit(settings.rate_limit_per_key_per_minute, burst),
        per_address=limit(settings.rate_limit_per_address_per_minute, burst),
        send_frame=limit(settings.rate_limit_send_frame_per_minute, burst),
        auth_failures=limit(settings.rate_limit_auth_failures_per_minute, burst),
    )


def _metrics(cache: LiveCache, live: LiveFeed) -> Metrics:
    metrics = Metrics()
    metrics.watch(cache_metrics(cache.stats))
    metrics.watch(websocket_metrics(live.stats))
    return metrics
