"""Provider configurations over the API: CRUD, write-only encrypted keys, defaults, testing."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from framewatch.models import DetectionEventLog, DetectionProviderConfig
from framewatch.providers.server import create_provider_server_app
from framewatch.runtime import load_builtin_detector
from tests.api.helpers import add_camera, covers, post_frame
from tests.api_fixtures import Api
from tests.conftest import frame_bytes
from tests.support.servers import free_port, serve_app

SECRET = "sk-very-secret-provider-key-1234"


@pytest.fixture(scope="module")
def provider_server() -> Iterator[str]:
    """framewatch's own detector behind the DeepStack wire format, on 127.0.0.1."""
    with serve_app(create_provider_server_app(lambda: load_builtin_detector(True))) as url:
        yield url


async def create(api: Api, **body: object) -> dict:  # type: ignore[type-arg]
    response = await api.client.post("/api/v1/providers", json=body, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_the_builtin_detector_is_the_default_on_first_start(api: Api) -> None:
    response = await api.client.get("/api/v1/detections/provider/config",
                                     headers=api.auth("viewer"))
    assert response.status_code == 200
    assert response.json()["kind"] == "builtin" and response.json()["is_default"] is True


async def test_api_keys_are_write_only_and_encrypted_at_rest(api: Api) -> None:
    created = await create(api, name="cp", kind="deepstack", base_url="http://127.0.0.1:5000/",
                           api_key=SECRET)
    assert created["base_url"] == "http://127.0.0.1:5000"
    assert created["has_api_key"] is True and created["api_key_hint"] == "••••1234"
    for path in ("/api/v1/providers", f"/api/v1/providers/{created['id']}"):
        response = await api.client.get(path, headers=api.auth("admin"))
        assert SECRET not in response.text and "api_key\"" not in response.text.replace(
            "has_api_key\"", "")
    async with api.runtime.session_factory() as session:
        row = await session.get(DetectionProviderConfig, created["id"])
        assert row is not None and row.api_key_encrypted is not None
        assert SECRET.encode() not in row.api_key_encrypted
        assert api.runtime.secret_box.decrypt(row.api_key_encrypted) == SECRET
        events = await session.scalars(select(DetectionEventLog.payload))
        assert all(SECRET not in str(payload) for payload in events)

    kept = await api.client.patch(f"/api/v1/providers/{created['id']}", headers=api.auth("admin"),
                                  json={"min_confidence": 0.6})
    assert kept.json()["has_api_key"] is True and kept.json()["min_confidence"] == 0.6
    cleared = await api.client.patch(f"/api/v1/providers/{created['id']}",
                                     headers=api.auth("admin"), json={"api_key": None})
    assert cleared.json()["has_api_key"] is False and cleared.json()["api_key_hint"] is None


async def test_one_default_at_a_time(api: Api) -> None:
    first = await create(api, name="a", kind="deepstack", base_url="http://h:1", is_default=True)
    second = await create(api, name="b", kind="deepstack", base_url="http://h:2", is_default=True)
    listed = (await api.client.get("/api/v1/providers", headers=api.auth("viewer"))).json()
    defaults = [p["name"] for p in listed if p["is_default"]]
    assert defaults == ["b"]
    await api.client.patch(f"/api/v1/providers/{first['id']}", headers=api.auth("admin"),
                           json={"is_default": True})
    config = (await api.client.get("/api/v1/detections/provider/config",
                                   headers=api.auth("viewer"))).json()
    assert config["id"] == first["id"] and config["id"] != second["id"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "x", "kind": "deepstack"}, 422),  # remote kinds need a URL
        ({"name": "x", "kind": "deepstack", "base_url": "ftp://h"}, 422),
        ({"name": "x", "kind": "deepstack", "base_url": "http://h", "timeout_seconds": 0}, 422),
        ({"name": "x", "kind": "nonsense"}, 422),
        ({"name": "x", "kind": "builtin", "min_confidence": 1.5}, 422),
        ({"name": "x", "kind": "builtin", "surprise": 1}, 422),
        ({"name": "x", "kind": "http", "base_url": "http://h",
          "options": {"box_format": "diagonal"}}, 422),
        ({"name": "x", "kind": "builtin", "options": {"retry_backoff_seconds": -1}}, 422),
        ({"name": "builtin", "kind": "builtin"}, 409),  # the name is taken
    ],
)
async def test_invalid_configurations_are_refused(api: Api, body: dict, status: int) -> None:  # type: ignore[type-arg]
    response = await api.client.post("/api/v1/providers", json=body, headers=api.auth("admin"))
    assert response.status_code == status, response.text
    assert response.json()["error"] in ("validation_error", "conflict")


async def test_put_default_provider_config_replaces_it(api: Api) -> None:
    put = await api.client.put(
        "/api/v1/detections/provider/config", headers=api.auth("admin"),
        json={"kind": "deepstack", "base_url": "http://127.0.0.1:9", "api_key": SECRET,
              "detection_types": ["person"], "min_confidence": 0.55},
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["kind"] == "deepstack" and body["is_default"] and body["name"] == "builtin"
    assert body["detection_types"] == ["person"] and body["api_key_hint"] == "••••1234"
    again = await api.client.put("/api/v1/detections/provider/config", headers=api.auth("admin"),
                                 json={"kind": "builtin", "name": "local"})
    assert again.json()["name"] == "local" and again.json()["has_api_key"] is True
    assert len((await api.client.get("/api/v1/providers", headers=api.auth("admin"))).json()) == 1


async def test_test_provider_with_the_sample_image(api: Api) -> None:
    response = await api.client.post("/api/v1/detections/test-provider",
                                      headers=api.auth("admin"), json={"provider_id": 1})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["success"] is True and report["kind"] == "builtin"
    assert report["capabilities"]["face_encodings"] is True
    assert any(found["type"] == "person" for found in report["found"])


async def test_test_provider_inline_over_http(api: Api, provider_server: str) -> None:
    image = base64.b64encode(frame_bytes("street.jpg")).decode()
    response = await api.client.post(
        "/api/v1/detections/test-provider", headers=api.auth("admin"),
        json={"provider": {"kind": "deepstack", "base_url": provider_server},
              "image_base64": image, "detection_types": ["person"]},
    )
    report = response.json()
    assert report["success"] is True, report
    assert report["provider"] == "inline-test" and report["latency_ms"] > 0
    assert sum(found["type"] == "person" for found in report["found"]) >= 2
    assert len((await api.client.get("/api/v1/providers", headers=api.auth("admin"))).json()) == 1


async def test_test_provider_reports_a_failure_without_failing(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/detections/test-provider", headers=api.auth("admin"),
        json={"provider": {"kind": "deepstack", "base_url": f"http://127.0.0.1:{free_port()}",
                           "max_retries": 2, "options": {"retry_backoff_seconds": 0.01}}},
    )
    assert response.status_code == 200
    report = response.json()
    assert report["success"] is False and report["attempts"] == 3
    assert report["error"]["error"] == "provider_unavailable"
    missing = await api.client.post("/api/v1/detections/test-provider",
                                    headers=api.auth("admin"), json={"provider_id": 404})
    assert missing.status_code == 404


async def test_a_camera_uses_its_own_provider_end_to_end(api: Api, provider_server: str) -> None:
    """The whole HTTP path: framewatch → DeepStack wire → framewatch's provider-server."""
    remote = await create(api, name="deepstack-local", kind="deepstack",
                          base_url=provider_server)
    await add_camera(api, provider_id=remote["id"])
    body = (await post_frame(api, "astronaut.jpg")).json()
    assert body["provider"] == "deepstack-local"
    persons = [d for d in body["detections"] if d["type"] == "person"]
    assert persons and covers(persons[0]["bbox"], 228, 120)

    # Disabled, it is not called: the frame is kept and queued, the answer is 503.
    await api.client.patch(f"/api/v1/providers/{remote['id']}", headers=api.auth("admin"),
                           json={"enabled": False})
    response = await post_frame(api, "coffee.jpg")
    assert response.status_code == 503 and "disabled" in response.json()["detail"]

    # Deleted, the camera falls back to the default (built-in) provider.
    deleted = await api.client.delete(f"/api/v1/providers/{remote['id']}",
                                      headers=api.auth("admin"))
    assert deleted.status_code == 204
    camera = (await api.client.get("/api/v1/cameras/gate", headers=api.auth("viewer"))).json()
    assert camera["provider_id"] is None
    assert (await post_frame(api, "coffee.jpg")).json()["provider"] == "builtin"
