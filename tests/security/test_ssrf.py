"""Where providers may be (server-side request forgery): refused when a provider is created,
changed, made the default or tested inline (422), and — after DNS — before every call (a provider
error; the request never leaves). Link-local and metadata addresses are refused always, private
and loopback ones unless allowed, and an allow-list (names and CIDR blocks) restricts the rest."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings
from tests.security.support import (
    ADMIN,
    RecordingProvider,
    deepstack_body,
    fresh_frame,
    running_api,
)
from tests.support.servers import serve_app

AppWith = Callable[..., AbstractAsyncContextManager[Api]]

ALWAYS_REFUSED = [
    "http://169.254.169.254/", "http://169.254.169.254:80/latest/meta-data/",
    "http://metadata.google.internal/", "http://METADATA.GOOGLE.INTERNAL./computeMetadata/",
    "http://metadata/", "http://169.254.170.2/", "http://100.100.100.200/",
    "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://[fe80::1%25eth0]:8080/",
    "http://169.254.1.1/", "http://0.0.0.0/", "http://224.0.0.1/",
    # An IPv4 address written as IPv6 is still that address.
    "http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/",
    "ftp://files.example.com/", "file:///etc/passwd", "gopher://127.0.0.1:6379/",
]
PRIVATE = ["http://10.0.0.5/", "http://127.0.0.1:5000/", "http://[::1]/", "http://192.168.1.10/",
           "http://172.16.0.1/", "http://[fd12:3456::1]/", "http://[::ffff:127.0.0.1]/",
           "http://[::ffff:10.0.0.5]:8080/"]
PUBLIC = "http://93.184.216.34:5000/"  # saved only: no call goes out to it


names = itertools.count(1)


def body(url: str, name: str | None = None) -> dict[str, Any]:
    """A provider at `url` that gives up fast when nothing answers there."""
    return deepstack_body(url, name or f"p{next(names)}", options={
        "retry_backoff_seconds": 0, "connect_timeout_seconds": 0.3})


@pytest.fixture
def app_with(tmp_path: Path, sqlite_template: Path) -> AppWith:
    """Start the app with these settings, on a database of its own."""
    count = itertools.count()

    def start(**values: Any) -> AbstractAsyncContextManager[Api]:
        where = tmp_path / f"app{next(count)}"
        where.mkdir()
        shutil.copy(sqlite_template, where / "framewatch.db")
        return running_api(make_settings(where, f"sqlite+aiosqlite:///{where / 'framewatch.db'}",
                                         log_level="WARNING", **values))

    return start


async def save_attempts(api: Api, url: str, start: str = PUBLIC) -> dict[str, httpx.Response]:
    """Every way of saving (or trying) a provider at `url`; the one changed to it is first saved
    at `start` (an address the app's policy accepts)."""
    public = await api.client.post("/api/v1/providers", headers=ADMIN, json=body(start))
    assert public.status_code == 201, public.text
    settings = {k: v for k, v in body(url).items() if k != "name"}
    return {
        "create": await api.client.post("/api/v1/providers", headers=ADMIN, json=body(url)),
        "update": await api.client.patch(f"/api/v1/providers/{public.json()['id']}",
                                         headers=ADMIN, json={"base_url": url}),
        "default": await api.client.put("/api/v1/detections/provider/config", headers=ADMIN,
                                        json=settings),
        "test inline": await api.client.post("/api/v1/detections/test-provider",
                                             headers=ADMIN, json={"provider": settings}),
    }


async def assert_refused(api: Api, url: str, start: str = PUBLIC) -> None:
    for how, response in (await save_attempts(api, url, start)).items():
        assert response.status_code == 422, (url, how, response.text)
        answer = response.json()
        assert answer["error"] == "validation_error", (url, how)
        assert "base_url" in answer["detail"], (url, how, answer)
    saved = {p["base_url"] for p in (await api.client.get("/api/v1/providers",
                                                          headers=ADMIN)).json()}
    assert not saved & {url, url.rstrip("/")}, saved


async def assert_saved(api: Api, url: str, start: str = PUBLIC) -> None:
    attempts = await save_attempts(api, url, start)
    for how in ("create", "update", "default"):
        assert attempts[how].status_code in (200, 201), (url, how, attempts[how].text)
        assert attempts[how].json()["base_url"] == url.rstrip("/")
    # Tested inline, the call is let out (and fails: nothing listens there), not refused.
    report = attempts["test inline"]
    assert report.status_code == 200, (url, report.text)
    assert "refused to call" not in str(report.json()["error"]), (url, report.json())


async def test_metadata_link_local_and_other_schemes_are_always_refused(
    app_with: AppWith,
) -> None:
    for allow_private in (False, True):
        async with app_with(provider_allow_private_networks=allow_private) as api:
            for url in ALWAYS_REFUSED:
                await assert_refused(api, url)


async def test_private_addresses_only_when_allowed(app_with: AppWith) -> None:
    async with app_with(provider_allow_private_networks=False) as api:
        for url in PRIVATE:
            await assert_refused(api, url)
    async with app_with(provider_allow_private_networks=True) as api:
        for url in PRIVATE:
            await assert_saved(api, url)


async def test_a_name_resolving_to_a_forbidden_address_is_refused_at_call_time(
    app_with: AppWith,
) -> None:
    server = RecordingProvider()
    with serve_app(server.app()) as url:
        by_name = url.replace("127.0.0.1", "localhost")
        async with app_with(provider_allow_private_networks=False) as api:
            # A name is not resolved when saved...
            created = await api.client.post("/api/v1/providers", headers=ADMIN,
                                            json=body(by_name, "sneaky"))
            assert created.status_code == 201, created.text
            await add_camera(api, "gate", provider_id=created.json()["id"])
            # ...but before every call.
            report = await api.client.post("/api/v1/detections/test-provider", headers=ADMIN,
                                           json={"provider_id": created.json()["id"]})
            assert report.status_code == 200 and report.json()["success"] is False
            error = report.json()["error"]
            assert error["error"] == "provider_error" and "refused to call localhost" in \
                error["detail"] and "private address" in error["detail"], error
            frame = await api.client.post(
                "/api/v1/detections/send-frame", headers=api.auth("operator"),
                files={"image": ("f.jpg", fresh_frame(), "image/jpeg")}, data={"camera_id": "gate"})
            assert frame.status_code == 502, frame.text
            assert "refused to call localhost" in frame.json()["detail"]
    assert server.requests == []


async def test_the_allow_list_of_names_and_networks(app_with: AppWith) -> None:
    server = RecordingProvider()
    with serve_app(server.app()) as url:
        port = url.rsplit(":", 1)[1]
        async with app_with(provider_allow_private_networks=False,
                            provider_allowed_hosts="localhost, 10.1.0.0/16") as api:
            listed = "http://10.1.0.1/"  # the only public address: none is listed
            await assert_saved(api, "http://10.1.2.3/", listed)
            for refused in ("http://10.2.0.1/", f"http://127.0.0.1:{port}/",
                            "http://169.254.169.254/"):
                await assert_refused(api, refused, listed)
            named = await api.client.post("/api/v1/providers", headers=ADMIN,
                                          json=body(f"http://localhost:{port}", "listed"))
            assert named.status_code == 201, named.text
            assert await provider_works(api, named.json()["id"]) is True
        async with app_with(provider_allowed_hosts="localhost",
                            provider_allow_private_networks=True) as api:
            # A list of names only: other names are refused when saved, whatever they are.
            listed = f"http://localhost:{port}/"
            await assert_refused(api, "http://provider.example.com/", listed)
            await assert_refused(api, f"http://127.0.0.1:{port}/", listed)
        async with app_with(provider_allowed_hosts="127.0.0.0/8, 169.254.0.0/16",
                            provider_allow_private_networks=False) as api:
            # Listing link-local does not open the metadata service.
            listed = f"http://127.0.0.1:{port}/"
            await assert_refused(api, "http://169.254.169.254/", listed)
            await assert_refused(api, "http://10.0.0.1/", listed)
            for host in ("127.0.0.1", "localhost"):  # a name: its addresses are checked
                created = await api.client.post("/api/v1/providers", headers=ADMIN,
                                                json=body(f"http://{host}:{port}", host))
                assert created.status_code == 201, created.text
                assert await provider_works(api, created.json()["id"]) is True
    assert len(server.requests) == 3


async def test_redirects_are_not_followed(app_with: AppWith) -> None:
    target, redirecting = RecordingProvider(), RecordingProvider("redirect")
    with serve_app(target.app()) as target_url, serve_app(redirecting.app()) as url:
        redirecting.redirect_to = target_url + "/v1/vision/detection"
        async with app_with(provider_allow_private_networks=True) as api:
            created = await api.client.post("/api/v1/providers", headers=ADMIN,
                                            json=body(url, "redirecting"))
            assert await provider_works(api, created.json()["id"]) is False
    assert len(redirecting.requests) == 1 and target.requests == []


async def provider_works(api: Api, provider_id: int) -> bool:
    """Whether `test-provider` got a good answer (a plain name: `test*` would be collected)."""
    report = await api.client.post("/api/v1/detections/test-provider", headers=ADMIN,
                                   json={"provider_id": provider_id})
    assert report.status_code == 200, report.text
    success: bool = report.json()["success"]
    return success

