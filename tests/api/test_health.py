"""/healthz and /readyz: open to anyone; readiness follows the database and Redis."""

from __future__ import annotations

import time
from pathlib import Path

from tests.api.helpers import assert_error
from tests.api_fixtures import Api, make_settings, start_api
from tests.conftest import redis_url_or_skip
from tests.support.servers import free_port


async def test_healthz_needs_no_key_and_says_ok(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # A wrong key is not even looked at.
    wrong = await api.client.get("/healthz", headers={"Authorization": "Bearer fw_wrong"})
    assert wrong.status_code == 200


async def test_readyz_needs_no_key_and_reports_the_database(api_any_db: Api) -> None:
    api = api_any_db
    response = await api.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}
    wrong = await api.client.get("/readyz", headers={"Authorization": "Bearer fw_wrong"})
    assert wrong.status_code == 200


async def test_readyz_reports_redis_when_it_is_configured(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url=redis_url_or_skip())
    async for api in start_api(settings):
        response = await api.client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ready",
                                   "checks": {"database": "ok", "redis": "ok"}}


async def test_an_unreachable_redis_makes_readyz_503_while_healthz_stays_200(
    tmp_path: Path, sqlite_url: str
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async for api in start_api(make_settings(tmp_path, sqlite_url, redis_url=closed)):
        started = time.monotonic()
        response = await api.client.get("/readyz")
        assert time.monotonic() - started < 5  # the short client timeouts hold
        body = assert_error(response, 503, "not_ready")
        assert body["detail"] == "unreachable: redis"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error: ")
        assert "127.0.0.1" not in body["checks"]["redis"]  # the class, no connection details

        healthz = await api.client.get("/healthz")
        assert healthz.status_code == 200 and healthz.json() == {"status": "ok"}
        # The rest of the API still answers; Redis is only a cache.
        cameras = await api.client.get("/api/v1/cameras", headers=api.auth("viewer"))
        assert cameras.status_code == 200 and cameras.json() == []
