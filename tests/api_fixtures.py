"""A running app with keys of every role, talked to over httpx (imported by API tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from framewatch.app import create_app
from framewatch.auth.service import Role, create_key
from framewatch.core.config import Settings
from framewatch.runtime import Runtime

ADMIN_KEY = "fw_test_admin_key_0123456789abcdef"


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    keys: dict[str, str]

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "admin_api_key": ADMIN_KEY,
        "secret_key": "test-secret-passphrase",
        # The fake providers of the tests listen on 127.0.0.1.
        "provider_allow_private_networks": True,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def start_api(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = {"admin": ADMIN_KEY}
        runtime: Runtime = app.state.runtime
        async with runtime.session_factory() as session:
            for role in (Role.VIEWER, Role.OPERATOR):
                _, keys[role.value] = await create_key(session, name=f"test-{role}", role=role)
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app=app, client=client, settings=settings, keys=keys)


@pytest.fixture
async def api(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Api]:
    """The app on a fresh SQLite database."""
    async for running in start_api(make_settings(tmp_path, sqlite_url)):
        yield running


@pytest.fixture
async def api_any_db(tmp_path: Path, any_database_url: str) -> AsyncIterator[Api]:
    """The app on SQLite and on PostgreSQL."""
    async for running in start_api(make_settings(tmp_path, any_database_url)):
        yield running
