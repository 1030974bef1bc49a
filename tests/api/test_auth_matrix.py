"""Every endpoint × every role: no key and a wrong key get 401, a weaker role 403.

`ROUTES` must list every route of the app; a test fails when one is missing, so a new endpoint
cannot ship without its access rule being tested.
"""

from __future__ import annotations

from typing import Any

import pytest

from framewatch.app import create_app
from framewatch.core.config import Settings
from tests.api_fixtures import Api

ROLES = ("viewer", "operator", "admin")
OPEN = None

# (method, path, weakest role allowed or OPEN, request body)
ROUTES: list[tuple[str, str, str | None, dict[str, Any] | None]] = [
    ("GET", "/healthz", OPEN, None),
    ("GET", "/readyz", OPEN, None),
    ("POST", "/api/v1/detections/send-frame", "operator", None),
    ("GET", "/api/v1/detections/live", "viewer", None),
    ("GET", "/api/v1/detections", "viewer", None),
    ("GET", "/api/v1/detections/{detection_id}", "viewer", None),
    ("GET", "/api/v1/detections/queue", "viewer", None),
    ("GET", "/api/v1/detections/queue/{item_id}", "viewer", None),
    ("POST", "/api/v1/detections/queue/{item_id}/retry", "admin", None),
    ("POST", "/api/v1/detections/queue/retry-dead", "admin", None),
    ("GET", "/api/v1/detections/queue-stats", "viewer", None),
    ("GET", "/api/v1/detections/events", "viewer", None),
    ("GET", "/api/v1/detections/statistics", "viewer", None),
    ("GET", "/api/v1/cameras/{camera_id}/state", "viewer", None),
    ("GET", "/api/v1/detections/provider/config", "viewer", None),
    ("PUT", "/api/v1/detections/provider/config", "admin", {"kind": "builtin"}),
    ("POST", "/api/v1/detections/test-provider", "admin", {"provider_id": 1}),
    ("GET", "/api/v1/providers", "viewer", None),
    ("POST", "/api/v1/providers", "admin", {"name": "p", "kind": "builtin"}),
    ("GET", "/api/v1/providers/{provider_id}", "viewer", None),
    ("PATCH", "/api/v1/providers/{provider_id}", "admin", {"min_confidence": 0.5}),
    ("DELETE", "/api/v1/providers/{provider_id}", "admin", None),
    ("GET", "/api/v1/cameras", "viewer", None),
    ("POST", "/api/v1/cameras", "admin", {"id": "new-cam", "name": "New"}),
    ("GET", "/api/v1/cameras/{camera_id}", "viewer", None),
    ("PATCH", "/api/v1/cameras/{camera_id}", "admin", {"name": "Renamed"}),
    ("DELETE", "/api/v1/cameras/{camera_id}", "admin", None),
    ("GET", "/api/v1/frames/{frame_id}/image", "viewer", None),
    ("POST", "/api/v1/frames/{frame_id}/redetect", "operator", None),
    ("GET", "/api/v1/keys", "admin", None),
    ("POST", "/api/v1/keys", "admin", {"name": "k", "role": "viewer"}),
    ("DELETE", "/api/v1/keys/{key_id}", "admin", None),
    ("PATCH", "/api/v1/keys/{key_id}", "admin", {"expires_at": None}),
    ("POST", "/api/v1/keys/{key_id}/rotate", "admin", None),
    ("POST", "/api/v1/auth/ws-token", "viewer", None),
    ("GET", "/api/v1/retention", "admin", None),
    ("POST", "/api/v1/retention/run", "admin", {"dry_run": True}),
    ("POST", "/api/v1/cameras/{camera_id}/purge-biometrics", "admin", None),
]
PATH_VALUES = {"detection_id": "1", "provider_id": "1", "camera_id": "gate", "frame_id": "1",
               "key_id": "999", "item_id": "1"}


def test_every_route_is_in_the_matrix() -> None:
    schema = create_app(Settings(data_dir="/nonexistent")).openapi()
    served = {
        (method.upper(), path) for path, operations in schema["paths"].items()
        for method in operations
    }
    listed = {(method, path) for method, path, _, _ in ROUTES}
    assert served == listed


async def call(api: Api, method: str, path: str, body: dict[str, Any] | None,
               headers: dict[str, str]) -> int:
    url = path.format(**PATH_VALUES)
    response = await api.client.request(method, url, json=body, headers=headers)
    return response.status_code


def weaker(role: str) -> list[str]:
    return list(ROLES[: ROLES.index(role)])


@pytest.mark.parametrize(("method", "path", "needed", "body"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
async def test_access(api: Api, method: str, path: str, needed: str | None,
                      body: dict[str, Any] | None) -> None:
    await api.client.post("/api/v1/cameras", json={"id": "gate", "name": "Gate"},
                          headers=api.auth("admin"))
    if needed is OPEN:
        assert await call(api, method, path, body, {}) == 200
        return
    assert await call(api, method, path, body, {}) == 401
    assert await call(api, method, path, body, {"Authorization": "Bearer fw_wrong"}) == 401
    assert await call(api, method, path, body, {"Authorization": "Basic abc"}) == 401
    for role in weaker(needed):
        assert await call(api, method, path, body, api.auth(role)) == 403, role
    for role in ROLES[ROLES.index(needed):]:
        status = await call(api, method, path, body, api.auth(role))
        assert status not in (401, 403), (role, status)


async def test_revoked_and_expired_keys_are_refused(api: Api) -> None:
    created = await api.client.post("/api/v1/keys", headers=api.auth("admin"),
                                    json={"name": "short", "role": "viewer"})
    assert created.status_code == 201
    key = created.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/api/v1/cameras", headers=headers)).status_code == 200
    revoked = await api.client.delete(f"/api/v1/keys/{created.json()['id']}",
                                      headers=api.auth("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = await api.client.get("/api/v1/cameras", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"

    expired = await api.client.post(
        "/api/v1/keys", headers=api.auth("admin"),
        json={"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"})
    old_key = expired.json()["key"]
    response = await api.client.get("/api/v1/cameras",
                                    headers={"Authorization": f"Bearer {old_key}"})
    assert response.status_code == 401


async def test_keys_are_listed_without_secrets(api: Api) -> None:
    response = await api.client.get("/api/v1/keys", headers=api.auth("admin"))
    assert response.status_code == 200
    listed = response.json()
    assert {k["name"] for k in listed} >= {"admin", "test-viewer", "test-operator"}
    text = response.text
    for key in api.keys.values():
        assert key not in text
    assert all("key" not in k and "key_hash" not in k for k in listed)
