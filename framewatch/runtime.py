"""The process's shared resources, made once in the app lifespan (or by a CLI command)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framewatch.core.config import Settings
from framewatch.core.database import create_engine, create_session_factory
from framewatch.core.secrets import SecretBox, load_secret_box
from framewatch.detector.detector import BuiltinDetector
from framewatch.frames.storage import FrameStore
from framewatch.live.cache import LiveCache, create_cache
from framewatch.providers.base import ProviderDeps


@functools.lru_cache(maxsize=2)
def load_builtin_detector(face_encodings: bool) -> BuiltinDetector:
    # Model weights are immutable and take a second to load: one copy per process, on first use.
    return BuiltinDetector(face_encodings=face_encodings)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    secret_box: SecretBox
    http_client: httpx.AsyncClient
    cache: LiveCache
    frame_store: FrameStore
    provider_deps: ProviderDeps

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.resolved_database_url)
        http_client = httpx.AsyncClient(
            follow_redirects=False, limits=httpx.Limits(max_connections=100)
        )

        def detector() -> BuiltinDetector:
            return load_builtin_detector(settings.builtin_face_encodings)

        return cls(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            secret_box=load_secret_box(settings),
            http_client=http_client,
            cache=create_cache(settings.redis_url),
            frame_store=FrameStore(settings.frames_dir),
            provider_deps=ProviderDeps(http_client=http_client, builtin_detector=detector),
        )

    async def warm_up_detector(self) -> None:
        """Load the built-in detector's weights off the event loop, before the first frame."""
        await asyncio.to_thread(self.provider_deps.builtin_detector)

    async def close(self) -> None:
        await self.http_client.aclose()
        await self.cache.backend.close()
        await self.engine.dispose()
