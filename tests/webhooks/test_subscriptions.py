"""The subscription API: what is stored and shown (never the secret), clear 4xx answers for bad
input, and the address policy applied to receivers — when saved and again before every POST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framewatch.providers.urls import ProviderAddressPolicy
from tests.api_fixtures import Api, make_settings, start_api
from tests.webhooks.support import (
    FAST,
    create_webhook,
    events_of,
    receiving,
    send,
    settled,
    webhook_api,
)


@pytest.fixture
async def public_only(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Api]:
    """The app with the default address policy: no private or loopback receivers."""
    settings = make_settings(tmp_path, sqlite_url, provider_allow_private_networks=False)
    async for api in start_api(settings):
        yield api


async def test_a_subscription_is_stored_and_its_secret_shown_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with webhook_api(tmp_path, sqlite_url) as api:
        admin = api.auth("admin")
        created = await create_webhook(
            api, "http://127.0.0.1:9/hook?token=abc", camera_ids=["gate"],
            detection_types=["person"], min_confidence=0.5,
            event_types=["person.identified", "detection", "detection"])
        assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
        assert created["event_types"] == ["detection", "person.identified"]
        shown = (await api.client.get(f"/api/v1/webhooks/{created['id']}", headers=admin)).json()
        assert "secret" not in shown and "secret_encrypted" not in shown
        assert shown["url"] == "http://127.0.0.1:9/hook?token=abc"
        assert shown["created_by"].startswith("key:")

        patched = await api.client.patch(f"/api/v1/webhooks/{created['id']}", headers=admin,
                                         json={"camera_ids": None, "generate_secret": True})
        assert patched.status_code == 200, patched.text
        assert patched.json()["camera_ids"] is None
        assert patched.json()["secret"] not in (None, created["secret"])
        own = await api.client.patch(f"/api/v1/webhooks/{created['id']}", headers=admin,
                                     json={"secret": "a-secret-of-my-own"})
        assert own.json()["secret"] is None  # not generated: not shown

        (audit_created,) = await events_of(api, "webhook.created")
        assert audit_created.payload["url"] == "http://127.0.0.1:9/hook"  # no query string
        updates = await events_of(api, "webhook.updated")
        assert [e.payload["secret_changed"] for e in updates] == [True, True]
        assert all(created["secret"] not in str(e.payload) for e in updates)

        deleted = await api.client.delete(f"/api/v1/webhooks/{created['id']}", headers=admin)
        assert deleted.status_code == 204
        gone = await api.client.get(f"/api/v1/webhooks/{created['id']}", headers=admin)
        assert gone.status_code == 404 and gone.json()["error"]


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://127.0.0.1/hook"}, "url"),
    ({"url": "http://169.254.169.254/latest"}, "url"),
    ({"url": "http://metadata.google.internal/"}, "url"),
    ({"event_types": ["frame.exploded"]}, "event_types"),
    ({"event_types": []}, "event_types"),
    ({"camera_ids": ["Not A Slug"]}, "camera_ids"),
    ({"min_confidence": 2}, "min_confidence"),
    ({"secret": "short"}, "secret"),
    ({"surprise": True}, "surprise"),
])
async def test_bad_subscriptions_get_a_clear_4xx(
    tmp_path: Path, sqlite_url: str, body: dict[str, object], field: str
) -> None:
    async for api in start_api(make_settings(tmp_path, sqlite_url)):
        payload = {"name": "bad", "url": "http://127.0.0.1:9/hook", **body}
        response = await api.client.post("/api/v1/webhooks", json=payload,
                                          headers=api.auth("admin"))
        assert response.status_code in (400, 422), response.text
        answer = response.json()
        assert answer["error"] and field in response.text
        listed = await api.client.get("/api/v1/webhooks", headers=api.auth("admin"))
        assert listed.json() == []


async def test_private_receivers_follow_the_provider_address_policy(public_only: Api) -> None:
    admin = public_only.auth("admin")
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/"):
        response = await public_only.client.post(
            "/api/v1/webhooks", json={"name": "inside", "url": url}, headers=admin)
        assert response.status_code == 422, response.text
        assert "private address" in response.json()["detail"] or "private" in response.text
    others = await public_only.client.post(
        "/api/v1/webhooks", json={"name": "nope", "url": "http://127.0.0.1/"},
        headers=public_only.auth("operator"))
    assert others.status_code == 403


async def test_the_policy_is_checked_again_before_every_post(
    tmp_path: Path, sqlite_url: str
) -> None:
    with receiving() as (receiver, url):
        async with webhook_api(tmp_path, sqlite_url, **FAST) as api:
            hook = await create_webhook(api, url)
            # As if the receiver's name now resolved to a forbidden address (DNS rebinding):
            # the policy is consulted at the POST, not only when the subscription was saved.
            api.runtime.provider_policy = ProviderAddressPolicy(allow_private=False)
            await send(api, "gate", 1)
            (row,) = await settled(api, hook["id"], 1)
            (dead,) = await events_of(api, "webhook.dead_letter")
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("dead", 1, None)
    assert row["last_error"].startswith("refused by the address policy")
    assert dead.payload["reason"] == "not retryable"
    assert receiver.hits == []
