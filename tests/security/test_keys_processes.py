"""Keys and secrets across processes: a key revoked through one `framewatch serve` instance is
refused by another (same PostgreSQL database) within seconds, and `framewatch secret-key rotate`
re-encrypts the providers' API keys and the webhooks' secrets so that a restarted service still
calls its providers and signs its deliveries with the same secrets."""

from __future__ import annotations

import asyncio
import shutil
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from framewatch.app import create_app
from framewatch.core.config import Settings
from framewatch.core.secrets import SECRET_KEY_FILE, SecretBox, fernet_key_from
from framewatch.models import DetectionProviderConfig
from framewatch.webhooks.signing import SIGNATURE_HEADER, verify
from tests.api_fixtures import make_settings
from tests.conftest import postgres_emptied
from tests.live.clients import QUIET
from tests.security.support import ADMIN, RecordingProvider, bearer, deepstack_body
from tests.support.processes import ProcessGroup, framewatch_env, run_command
from tests.support.servers import free_port, serve_app
from tests.webhooks.support import receiving

START_WITHIN = 60.0
REVOKED_EVERYWHERE_WITHIN = 5.0
PROVIDER_KEY = "sk-rotation-test-5f1e0c7a9b2d"
WEBHOOK_SECRET = "whsec_rotation-test-0b8e2f4c61"


async def wait_until_serving(processes: ProcessGroup, url: str) -> None:
    deadline = time.monotonic() + START_WITHIN
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        while time.monotonic() < deadline:
            processes.check_running()
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not serve in {START_WITHIN} s")


@pytest.fixture
def empty_postgres(request: pytest.FixtureRequest) -> str:
    return postgres_emptied(request)


@pytest.mark.postgres
async def test_a_revoked_key_is_refused_by_every_instance_within_seconds(
    empty_postgres: str, tmp_path: Path,
) -> None:
    database = empty_postgres
    settings = make_settings(tmp_path, database, log_level="WARNING", **QUIET)
    processes = ProcessGroup(tmp_path / "processes", framewatch_env(settings))
    try:
        urls = {}
        for name in ("A", "B"):  # one after the other: A creates the admin key
            port = free_port()
            processes.start(f"serve-{name}", "serve",
                            env={**processes.env, "FRAMEWATCH_PORT": str(port)})
            urls[name] = f"http://127.0.0.1:{port}"
            await wait_until_serving(processes, urls[name])
        async with httpx.AsyncClient(base_url=urls["A"], timeout=10) as a, \
                httpx.AsyncClient(base_url=urls["B"], timeout=10) as b:
            created = await a.post("/api/v1/keys", headers=ADMIN,
                                   json={"name": "departed", "role": "viewer"})
            assert created.status_code == 201, created.text
            headers = bearer(created.json()["key"])
            # Both instances have checked (and now trust) the key.
            for client in (a, b):
                assert (await client.get("/api/v1/cameras", headers=headers)).status_code == 200
            revoked = await a.delete(f"/api/v1/keys/{created.json()['id']}", headers=ADMIN)
            assert revoked.status_code == 200, revoked.text
            started = time.monotonic()
            assert (await a.get("/api/v1/cameras", headers=headers)).status_code == 401
            while (await b.get("/api/v1/cameras", headers=headers)).status_code != 401:
                assert time.monotonic() - started < REVOKED_EVERYWHERE_WITHIN, \
                    "instance B still accepts the revoked key"
                await asyncio.sleep(0.05)
            print(f"instance B refused the revoked key after {time.monotonic() - started:.2f} s")
            failed = await b.get("/api/v1/detections/events", headers=ADMIN,
                                 params={"event_type": "auth.failed"})
            assert [(e["payload"]["key_name"], e["payload"]["reason"])
                    for e in failed.json()["items"]] == [("departed", "revoked")] * 2
        processes.check_running()
    finally:
        processes.stop_all()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def run_provider_test(client: httpx.AsyncClient, provider_id: int) -> dict[str, object]:
    response = await client.post("/api/v1/detections/test-provider", headers=ADMIN,
                                 json={"provider_id": provider_id})
    assert response.status_code == 200, response.text
    report: dict[str, object] = response.json()
    return report


async def stored_secret(app: FastAPI) -> bytes:
    async with app.state.runtime.session_factory() as session:
        value = await session.scalar(select(DetectionProviderConfig.api_key_encrypted)
                                     .where(DetectionProviderConfig.name == "recorded"))
    assert isinstance(value, bytes)
    return value


async def ping(client: httpx.AsyncClient, webhook_id: int) -> None:
    response = await client.post(f"/api/v1/webhooks/{webhook_id}/ping", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "delivered", response.text


async def test_secret_key_rotation_reencrypts_provider_keys_and_webhook_secrets(
    tmp_path: Path, sqlite_template: Path,
) -> None:
    shutil.copy(sqlite_template, tmp_path / "framewatch.db")
    # No FRAMEWATCH_SECRET_KEY: the key is generated into the data dir.
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'framewatch.db'}",
                             secret_key=None, log_level="WARNING", **QUIET)
    key_file = settings.data_dir / SECRET_KEY_FILE
    provider = RecordingProvider()
    with serve_app(provider.app()) as provider_url, receiving() as (receiver, receiver_url):
        async with running(settings) as (app, client):
            created = await client.post("/api/v1/providers", headers=ADMIN, json=deepstack_body(
                provider_url, api_key=PROVIDER_KEY))
            assert created.status_code == 201, created.text
            provider_id = created.json()["id"]
            assert (await run_provider_test(client, provider_id))["success"] is True
            before = await stored_secret(app)
            hook = await client.post("/api/v1/webhooks", headers=ADMIN, json={
                "name": "rotated", "url": receiver_url, "secret": WEBHOOK_SECRET})
            assert hook.status_code == 201, hook.text
            webhook_id = hook.json()["id"]
            await ping(client, webhook_id)
        old_key = key_file.read_text().strip()

        result = run_command(framewatch_env(settings), "secret-key", "rotate", "--yes")
        assert result.returncode == 0, result.stderr
        assert "1 provider API keys and 1 webhook secrets re-encrypted" in result.stdout
        new_key = key_file.read_text().strip()
        assert new_key != old_key and new_key not in result.stdout
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert not (settings.data_dir / (SECRET_KEY_FILE + ".new")).exists()

        async with running(settings) as (app, client):
            report = await run_provider_test(client, provider_id)
            assert report["success"] is True, report
            await ping(client, webhook_id)
            after = await stored_secret(app)
            rotated = await client.get("/api/v1/detections/events", headers=ADMIN,
                                       params={"event_type": "secret_key.rotated"})
        events = rotated.json()["items"]
        assert [(e["actor"], e["payload"]) for e in events] == [
            ("cli", {"providers": 1, "webhooks": 1})]
    # The webhook's deliveries were signed with its own secret before and after.
    pings = receiver.of_type("ping")
    assert len(pings) == 2
    assert all(verify(WEBHOOK_SECRET, hit.body, hit.headers[SIGNATURE_HEADER.lower()])
               for hit in pings)
    # The provider got the same API key before and after; the old key opens nothing now.
    assert [r["api_key"] for r in provider.requests] == [PROVIDER_KEY, PROVIDER_KEY]
    assert after != before
    assert SecretBox(fernet_key_from(new_key)).decrypt(after) == PROVIDER_KEY
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(fernet_key_from(old_key)).decrypt(after)
