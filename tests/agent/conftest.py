"""Fixtures of the agent tests: the fake provider, a real API on 127.0.0.1, and test videos."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.media import DEMO_FRAMES, demo_image, write_video
from tests.agent.support import ApiServer, api_settings
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

StartApi = Callable[..., Awaitable[ApiServer]]


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyProvider, str]]:
    """The fake DeepStack provider (one person per frame, no delay) and its URL."""
    provider = FlakyProvider()
    with serve_app(provider.app()) as url:
        yield provider, url


@pytest.fixture
async def start_api(tmp_path: Path, sqlite_url: str, flaky: tuple[FlakyProvider, str]
                    ) -> AsyncIterator[StartApi]:
    """Start the API with these settings, set up (provider, cameras, agent key); every API
    started is stopped at the end."""
    servers: list[ApiServer] = []

    async def start(**overrides: Any) -> ApiServer:
        server = ApiServer(api_settings(tmp_path, sqlite_url, **overrides))
        await server.set_up(flaky[1])
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def api(start_api: StartApi) -> ApiServer:
    return await start_api()


@pytest.fixture(scope="session")
def street_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minute of the demo street at 10 fps (its 30 frames, 20 times over): longer than any
    test watches it."""
    images = [demo_image(index) for index in range(len(DEMO_FRAMES))]
    return write_video(tmp_path_factory.mktemp("video") / "street.avi", images * 20)
