"""The audit trail of security events: failed authentications (and their rate limit per address),
missing permissions, refused admin actions, who did what from where — and never a secret, in an
event or in a log line."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from framewatch.models import DetectionEventLog
from tests.api.helpers import add_camera
from tests.api_fixtures import Api, make_settings
from tests.queue.scenario import wait_for_queue
from tests.security.support import (
    ADMIN,
    RecordingProvider,
    bearer,
    deepstack_body,
    events,
    new_key,
    running_api,
    send_frame,
)
from tests.support.servers import serve_app

ADDRESS = "203.0.113.7"


def client_from(api: Api, address: str) -> httpx.AsyncClient:
    """A client of the same app whose requests come from `address`."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def remote(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with client_from(api, ADDRESS) as client:
        yield client


def where(event: DetectionEventLog) -> tuple[str | None, str, str]:
    return event.address, event.payload["address"], event.payload["path"]


async def test_failed_authentications_are_audited(api: Api, remote: httpx.AsyncClient) -> None:
    await add_camera(api, "gate")
    revoked = await new_key(api.client, "gone", "viewer")
    await api.client.delete(f"/api/v1/keys/{revoked['id']}", headers=ADMIN)
    expired = await new_key(api.client, "stale", "viewer", expires_at="2020-01-01T00:00:00Z")
    cases = {"missing": {}, "unknown": bearer("fw_unknown_0123456789abcdefghij"),
             "revoked": bearer(revoked["key"]), "expired": bearer(expired["key"])}
    for reason, headers in cases.items():
        response = await remote.get("/api/v1/cameras/gate", headers=headers)
        assert response.status_code == 401, reason
    failed = await events(api, "auth.failed")
    assert [(e.payload["reason"], e.payload["key_name"], e.payload["outcome"], e.severity)
            for e in failed] == [("missing", None, "refused", "warning"),
                                 ("unknown", None, "refused", "warning"),
                                 ("revoked", "gone", "refused", "warning"),
                                 ("expired", "stale", "refused", "warning")]
    assert {where(e) for e in failed} == {(ADDRESS, ADDRESS, "/api/v1/cameras/gate")}
    assert {e.payload["method"] for e in failed} == {"GET"}


async def test_too_many_failures_from_one_address_get_429(tmp_path: Path,
                                                          sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, rate_limit_auth_failures_per_minute=6)
    async with running_api(settings) as api:
        wrong = bearer("fw_guess_0123456789abcdefghijklmnop")
        async with client_from(api, ADDRESS) as guesser, \
                client_from(api, "198.51.100.9") as other:
            statuses = [(await guesser.get("/api/v1/cameras", headers=wrong)).status_code
                        for _ in range(6)]
            assert statuses == [401] * 6
            limited = await guesser.get("/api/v1/cameras", headers=wrong)
            assert limited.status_code == 429
            body = limited.json()
            assert body["error"] == "rate_limited"
            assert int(limited.headers["retry-after"]) == body["retry_after_seconds"]
            assert 1 <= body["retry_after_seconds"] <= 60
            # A valid key still works from there, and other addresses are not affected.
            assert (await guesser.get("/api/v1/cameras", headers=ADMIN)).status_code == 200
            assert (await other.get("/api/v1/cameras", headers=wrong)).status_code == 401
        # The refusals by the limiter are not audited one by one.
        failed = await events(api, "auth.failed")
        assert [e.payload["address"] for e in failed] == [ADDRESS] * 6 + ["198.51.100.9"]


async def test_a_missing_permission_is_audited(api: Api, remote: httpx.AsyncClient) -> None:
    response = await remote.post("/api/v1/cameras", headers=api.auth("viewer"),
                                 json={"id": "gate", "name": "Gate"})
    assert response.status_code == 403
    [denied] = await events(api, "auth.denied")
    assert denied.payload == {"address": ADDRESS, "method": "POST", "path": "/api/v1/cameras",
                              "key_name": "test-viewer", "role": "viewer",
                              "permission": "cameras:admin", "outcome": "denied"}
    assert denied.address == ADDRESS and denied.severity == "warning"


async def test_refused_admin_actions_are_audited(api: Api, remote: httpx.AsyncClient) -> None:
    await add_camera(api, "gate")
    duplicate = await remote.post("/api/v1/cameras", headers=ADMIN,
                                  json={"id": "gate", "name": "Gate"})
    assert duplicate.status_code == 409
    no_url = await remote.post("/api/v1/providers", headers=ADMIN,
                               json={"name": "broken", "kind": "deepstack"})
    assert no_url.status_code == 422
    metadata = await remote.post("/api/v1/providers", headers=ADMIN,
                                 json={"name": "sneaky", "kind": "deepstack",
                                       "base_url": "http://169.254.169.254/"})
    assert metadata.status_code == 422
    failed = await events(api, "admin.failed")
    assert [(e.payload["method"], e.payload["path"], e.payload["permission"], e.payload["error"])
            for e in failed] == [
        ("POST", "/api/v1/cameras", "cameras:admin", "conflict"),
        ("POST", "/api/v1/providers", "providers:admin", "validation_error"),
        ("POST", "/api/v1/providers", "providers:admin", "validation_error")]
    for event in failed:
        assert (event.address, event.payload["address"]) == (ADDRESS, ADDRESS)
        assert (event.payload["key_name"], event.payload["outcome"]) == ("admin", "failed")
    # Nothing was made.
    assert [p["name"] for p in (await api.client.get("/api/v1/providers",
                                                     headers=ADMIN)).json()] == ["builtin"]


async def test_admin_actions_name_their_actor_and_address(api: Api,
                                                         remote: httpx.AsyncClient) -> None:
    created = await remote.post("/api/v1/keys", headers=ADMIN, json={"name": "k", "role": "agent"})
    key = f"/api/v1/keys/{created.json()['id']}"
    actions = [("POST", "/api/v1/cameras", {"id": "gate", "name": "Gate"}),
               ("PATCH", "/api/v1/cameras/gate", {"retention_detections_days": 3}),
               ("POST", "/api/v1/cameras/gate/purge-biometrics", None),
               ("POST", key + "/rotate", None),
               ("PATCH", key, {"camera_ids": ["gate"]}),
               ("DELETE", key, None),
               ("POST", "/api/v1/providers", {"name": "b2", "kind": "builtin"}),
               ("POST", "/api/v1/retention/run", {"dry_run": True})]
    for method, url, body in actions:
        response = await remote.request(method, url, json=body, headers=ADMIN)
        assert response.status_code in (200, 201), (method, url, response.text)
    kinds = ["key.created", "camera.created", "camera.updated", "biometrics.purged",
             "key.rotated", "key.updated", "key.revoked", "provider.created",
             "retention.cleanup"]
    recorded = [e for e in await events(api, *kinds) if e.address == ADDRESS]
    assert [e.event_type for e in recorded] == kinds
    assert {(e.actor, e.address) for e in recorded} == {("key:admin", ADDRESS)}
    assert all(e.request_id for e in recorded)


@pytest.fixture
async def api_failing_fast(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Api]:
    """The app, with a queued frame dead-lettered after one failed attempt."""
    async with running_api(make_settings(tmp_path, sqlite_url, queue_max_attempts=1)) as api:
        yield api


async def use_providers(api: Api, echo: bool) -> list[str]:
    """Providers with API keys — one that works, one that refuses (401), one that fails
    (500), each quoting the key back when `echo` — used by frames (sync and queued) and by
    test-provider; returns their keys."""
    used = []
    servers = {name: RecordingProvider(mode, echo=echo)
               for name, mode in (("good", "ok"), ("refusing", "refuse"), ("failing", "fail"))}
    with serve_app(servers["good"].app()) as good, serve_app(servers["refusing"].app()) as \
            refusing, serve_app(servers["failing"].app()) as failing:
        for name, url in (("good", good), ("refusing", refusing), ("failing", failing)):
            secret = f"sk-{name}-{'echoed' if echo else 'quiet'}-provider-key-7c1d93e4a2"
            created = await api.client.post("/api/v1/providers", headers=ADMIN,
                                            json=deepstack_body(url, name, api_key=secret))
            assert created.status_code == 201, created.text
            provider_id = created.json()["id"]
            if name == "good":  # a key changed later is a secret too
                used.append(secret)
                secret = secret.replace("provider", "second")
                patched = await api.client.patch(f"/api/v1/providers/{provider_id}",
                                                 headers=ADMIN, json={"api_key": secret})
                assert patched.json()["api_key_hint"] == "••••" + secret[-4:]
            used.append(secret)
            await add_camera(api, name, provider_id=provider_id)
            for mode in ("sync", "async"):
                await send_frame(api.client, api.auth("operator"), name, mode)
            tested = await api.client.post("/api/v1/detections/test-provider", headers=ADMIN,
                                           json={"provider_id": provider_id})
            assert tested.json()["success"] is (name == "good"), tested.text
            # The calls were real: the provider got its key.
            assert servers[name].requests[-1]["api_key"] == secret
        await wait_for_queue(api.client, ADMIN, within=20)
    return used


async def use_keys(api: Api) -> list[str]:
    """Keys created, rotated (with grace), used, revoked and used again; a wrong key, a
    WebSocket token. Returns every secret."""
    agent = await new_key(api.client, "cam-agent", "agent", ["gate"])
    rotated = await api.client.post(f"/api/v1/keys/{agent['id']}/rotate", headers=ADMIN,
                                    json={"grace_seconds": 60})
    token = await api.client.post("/api/v1/auth/ws-token", headers=api.auth("viewer"))
    secrets = [*api.keys.values(), "fw_wrong_guess_0123456789abcdefghijkl", agent["key"],
               rotated.json()["key"], token.json()["token"]]
    for key in secrets:
        await api.client.get("/api/v1/cameras", headers=bearer(key))
    await api.client.delete(f"/api/v1/keys/{agent['id']}", headers=ADMIN)
    assert (await api.client.get("/api/v1/cameras", headers=bearer(agent["key"]))).status_code \
        == 401
    return secrets


async def everything_written(api: Api, caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """Every event (message, payload, actor, provider), what the admin reads back through the
    API, and every log line."""
    texts = {f"event {e.id} {e.event_type}": " ".join(
        [e.message, json.dumps(e.payload), str(e.actor), str(e.provider)])
        for e in await events(api)}
    for url in ("/api/v1/detections/events?limit=500", "/api/v1/detections/queue?limit=500",
                "/api/v1/detections/queue-stats", "/api/v1/providers", "/api/v1/keys",
                "/api/v1/detections?limit=500"):
        texts[url] = (await api.client.get(url, headers=ADMIN)).text
    texts["log"] = caplog.text
    assert kinds_of(texts) >= {"provider.error", "provider.tested", "queue.dead_letter",
                               "provider.updated"}
    return texts


def kinds_of(texts: dict[str, str]) -> set[str]:
    return {place.split()[2] for place in texts if place.startswith("event ")}


async def test_no_secret_is_ever_written(api_failing_fast: Api,
                                         caplog: pytest.LogCaptureFixture) -> None:
    api = api_failing_fast
    caplog.set_level(logging.DEBUG)
    await add_camera(api, "gate")
    secrets = await use_providers(api, echo=False) + await use_keys(api)
    texts = await everything_written(api, caplog)
    assert kinds_of(texts) >= {"auth.failed", "key.created", "key.rotated", "key.revoked"}
    assert len(caplog.records) > 100  # the log did capture the run
    assert sorted({(secret, place) for secret in secrets for place, text in texts.items()
                   if secret in text}) == []


async def test_a_provider_key_quoted_in_a_provider_error_is_masked(
    api_failing_fast: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    api = api_failing_fast
    caplog.set_level(logging.DEBUG)
    secrets = await use_providers(api, echo=True)
    texts = await everything_written(api, caplog)
    assert sorted({(secret, place) for secret in secrets for place, text in texts.items()
                   if secret in text}) == []
