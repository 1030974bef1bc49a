"""The HTTP boundary: security headers on every kind of response (strict CSP for the API, the
docs' CDN allowed on the docs), CORS only for configured origins, JSON bodies bounded (413) and
JSON only (415)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.api_fixtures import Api, make_settings
from tests.security.support import ADMIN, running_api

ORIGIN = "https://ops.example.com"
COMMON = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
          "referrer-policy": "no-referrer", "cross-origin-opener-policy": "same-origin",
          "permissions-policy": "camera=(), microphone=(), geolocation=()"}
CDN = "https://cdn.jsdelivr.net"


def assert_protected(response: httpx.Response, docs: bool = False) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.url, name)
    csp = {d.split()[0]: d.split()[1:]
           for d in response.headers["content-security-policy"].split("; ")}
    assert csp["default-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    if docs:
        assert CDN in csp["script-src"] and CDN in csp["style-src"], csp
    else:
        assert "script-src" not in csp and "style-src" not in csp, csp
        assert not any(CDN in v or "'unsafe-inline'" in v for v in csp.values()), csp


@pytest.fixture
async def small_bodies(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Api]:
    async with running_api(make_settings(tmp_path, sqlite_url, max_json_bytes=2048)) as api:
        yield api


async def test_security_headers_on_api_docs_and_error_responses(small_bodies: Api) -> None:
    client = small_bodies.client
    responses = {
        "api": await client.get("/api/v1/cameras", headers=ADMIN),
        "schema": await client.get("/openapi.json"),
        "health": await client.get("/healthz"),
        "401": await client.get("/api/v1/cameras"),
        "403": await client.post("/api/v1/cameras", headers=small_bodies.auth("viewer"),
                                 json={"id": "x", "name": "x"}),
        "404": await client.get("/api/v1/nothing-here", headers=ADMIN),
        "405": await client.put("/api/v1/cameras", headers=ADMIN, json={}),
        "413": await client.post("/api/v1/cameras", headers=ADMIN,
                                 json={"id": "x", "name": "n" * 4000}),
        "415": await client.post("/api/v1/cameras", headers=ADMIN, data={"id": "x"}),
        "422": await client.post("/api/v1/cameras", headers=ADMIN, json={"id": "x"}),
    }
    for name, response in responses.items():
        if name.isdigit():
            assert response.status_code == int(name), (name, response.text)
        else:
            assert response.status_code == 200, name
        assert_protected(response)
        assert "strict-transport-security" not in response.headers  # plain HTTP
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200 and "<html" in response.text.lower()
        assert_protected(response, docs=True)
    transport = httpx.ASGITransport(app=small_bodies.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as secure:
        response = await secure.get("/api/v1/cameras", headers=ADMIN)
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert_protected(response)


async def test_no_cors_by_default(api: Api) -> None:
    response = await api.client.get("/api/v1/cameras", headers={**ADMIN, "Origin": ORIGIN})
    assert response.status_code == 200
    preflight = await api.client.options("/api/v1/cameras", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 405
    for answer in (response, preflight):
        assert not [h for h in answer.headers if h.startswith("access-control-")]
        assert_protected(answer)


async def test_cors_for_a_configured_origin_only(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, cors_origins=f"{ORIGIN}, https://b.example")
    async with running_api(settings) as api:
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        allowed = await api.client.options("/api/v1/cameras",
                                           headers={"Origin": ORIGIN, **preflight})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed_headers and "content-type" in allowed_headers
        assert allowed.headers.get("access-control-allow-credentials") is None
        assert_protected(allowed)
        response = await api.client.get("/api/v1/cameras", headers={**ADMIN, "Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert_protected(response)

        other = "https://evil.example"
        refused = await api.client.options("/api/v1/cameras",
                                           headers={"Origin": other, **preflight})
        assert refused.status_code == 400
        response = await api.client.get("/api/v1/cameras", headers={**ADMIN, "Origin": other})
        assert response.status_code == 200  # the browser, not the server, withholds it
        for answer in (refused, response):
            assert "access-control-allow-origin" not in answer.headers


async def test_json_bodies_over_the_limit_get_413(small_bodies: Api) -> None:
    client = small_bodies.client
    big = {"id": "big", "name": "n" * 190, "location": "l" * 190, "padding": "p" * 2000}
    declared = await client.post("/api/v1/cameras", headers=ADMIN, json=big)
    assert declared.status_code == 413
    assert declared.json() == {"error": "request_too_large", "limit_bytes": 2048,
                               "detail": "the request body is larger than the limit of 2048 "
                                         "bytes"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"id": "big", "name": "'
        for _ in range(30):
            yield b"n" * 100
        yield b'"}'

    streamed = await client.post("/api/v1/cameras", content=chunks(),
                                 headers={**ADMIN, "Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"] == "request_too_large"
    for method, url in (("PATCH", "/api/v1/cameras/big"), ("POST", "/api/v1/keys"),
                        ("PUT", "/api/v1/detections/provider/config")):
        response = await client.request(method, url, headers=ADMIN, json=big)
        assert response.status_code == 413, (method, url)
    # Under the limit, the same endpoint answers on its merits.
    fits = await client.post("/api/v1/cameras", headers=ADMIN,
                             json={"id": "big", "name": "n" * 190})
    assert fits.status_code == 201
    cameras = (await client.get("/api/v1/cameras", headers=ADMIN)).json()
    assert [c["id"] for c in cameras] == ["big"]


async def test_json_endpoints_refuse_other_content_types_with_415(api: Api) -> None:
    bodies = {"form": {"data": {"id": "gate", "name": "Gate"}},
              "text": {"content": b'{"id": "gate", "name": "Gate"}',
                       "headers": {"Content-Type": "text/plain"}},
              "multipart": {"files": {"f": ("x.json", b"{}", "application/json")}},
              "none": {"content": b'{"id": "gate", "name": "Gate"}', "headers": {}}}
    for name, body in bodies.items():
        headers = {**ADMIN, **body.pop("headers", {})}  # type: ignore[dict-item]
        for method, url in (("POST", "/api/v1/cameras"), ("PATCH", "/api/v1/cameras/gate"),
                            ("POST", "/api/v1/keys"), ("POST", "/api/v1/retention/run")):
            response = await api.client.request(method, url, headers=headers,
                                                **body)  # type: ignore[arg-type]
            assert response.status_code == 415, (name, method, url, response.text)
            assert response.json()["error"] == "unsupported_media_type"
    assert (await api.client.get("/api/v1/cameras", headers=ADMIN)).json() == []
    created = await api.client.post("/api/v1/cameras", headers=ADMIN,
                                    json={"id": "gate", "name": "Gate"})
    assert created.status_code == 201
    # send-frame takes multipart: its content types are its own business.
    frame = await api.client.post("/api/v1/detections/send-frame", headers=api.auth("operator"),
                                  files={"image": ("x.txt", b"not an image", "text/plain")},
                                  data={"camera_id": "gate"})
    assert frame.status_code in (400, 415, 422), frame.text
    assert "application/json" not in frame.json()["detail"]  # refused as an image, not as JSON
