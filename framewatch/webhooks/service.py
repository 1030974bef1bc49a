"""Webhook subscriptions: stored, checked against the address policy, audited."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.errors import BadRequest, Conflict, NotFound, ValidationFailed
from framewatch.core.secrets import SecretBox
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import WebhookSubscription
from framewatch.providers.urls import ForbiddenProviderAddress, ProviderAddressPolicy
from framewatch.webhooks.schemas import WebhookCreate, WebhookPatch
from framewatch.webhooks.signing import generate_secret

FILTER_FIELDS = ("camera_ids", "detection_types", "person_ids", "min_confidence", "event_types")
# Fields that `null` clears (a filter that no longer narrows anything); the others keep.
NULLABLE = frozenset({"camera_ids", "detection_types", "person_ids"})


async def check_url(policy: ProviderAddressPolicy, url: str) -> None:
    """Refuse (422) a receiver where outbound requests may not go — the providers' policy
    (framewatch/providers/urls.py), with the addresses the name resolves to now."""
    try:
        await policy.check_before_call(url)
    except ForbiddenProviderAddress as exc:
        raise ValidationFailed(f"url refused: {exc}", field="url") from None


async def list_webhooks(session: AsyncSession) -> list[WebhookSubscription]:
    return list(await session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))


async def get_webhook(session: AsyncSession, webhook_id: int) -> WebhookSubscription:
    in_range = 1 <= webhook_id <= 2**31 - 1  # 32-bit ids; larger ones cannot be bound
    row = await session.get(WebhookSubscription, webhook_id) if in_range else None
    if row is None:
        raise NotFound(f"no webhook with id {webhook_id}")
    return row


async def create_webhook(
    session: AsyncSession, body: WebhookCreate, secrets: SecretBox,
    policy: ProviderAddressPolicy, *, actor: str | None,
) -> tuple[WebhookSubscription, str | None]:
    """The new subscription, and its secret if one was generated (to show once)."""
    await check_url(policy, body.url)
    await _ensure_name_free(session, body.name)
    generated = None if body.secret is not None else generate_secret()
    secret = body.secret.get_secret_value() if body.secret is not None else generated
    assert secret is not None
    row = WebhookSubscription(
        name=body.name, url=body.url, enabled=body.enabled,
        secret_encrypted=secrets.encrypt(secret), created_by=actor,
        **{name: getattr(body, name) for name in FILTER_FIELDS},
    )
    session.add(row)
    await session.flush()
    record_event(session, EventType.WEBHOOK_CREATED, f"webhook {row.name!r} created",
                 actor=actor, payload=audit_payload(row))
    return row, generated


async def update_webhook(
    session: AsyncSession, webhook_id: int, body: WebhookPatch, secrets: SecretBox,
    policy: ProviderAddressPolicy, *, actor: str | None,
) -> tuple[WebhookSubscription, str | None]:
    row = await get_webhook(session, webhook_id)
    given = body.model_fields_set - {"secret", "generate_secret"}
    if body.secret is not None and body.generate_secret:
        raise BadRequest("give either `secret` or `generate_secret`, not both", field="secret")
    if body.url is not None:
        await check_url(policy, body.url)
    if body.name is not None and body.name != row.name:
        await _ensure_name_free(session, body.name)
    changed: list[str] = []
    for name in sorted(given):
        value = getattr(body, name)
        if value is None and name not in NULLABLE:
            continue
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    generated = generate_secret() if body.generate_secret else None
    new_secret = body.secret.get_secret_value() if body.secret is not None else generated
    if new_secret is not None:
        row.secret_encrypted = secrets.encrypt(new_secret)
    await session.flush()
    record_event(session, EventType.WEBHOOK_UPDATED, f"webhook {row.name!r} updated",
                 actor=actor, payload={**audit_payload(row), "changed": changed,
                                       "secret_changed": new_secret is not None})
    return row, generated


async def delete_webhook(session: AsyncSession, webhook_id: int, *, actor: str | None) -> None:
    """Delete a subscription with its deliveries (pending ones are not sent)."""
    row = await get_webhook(session, webhook_id)
    payload = audit_payload(row)
    await session.delete(row)
    await session.flush()
    record_event(session, EventType.WEBHOOK_DELETED, f"webhook {row.name!r} deleted",
                 severity=Severity.WARNING, actor=actor, payload=payload)


def audit_payload(row: WebhookSubscription) -> dict[str, Any]:
    """What an event says about a subscription: never its secret, nor credentials or a query
    string in its URL (some receivers take a token there)."""
    return {"webhook_id": row.id, "name": row.name, "url": redacted(row.url),
            "enabled": row.enabled, **{name: getattr(row, name) for name in FILTER_FIELDS}}


def redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        pass
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def _ensure_name_free(session: AsyncSession, name: str) -> None:
    taken = await session.scalar(
        select(WebhookSubscription.id).where(WebhookSubscription.name == name))
    if taken is not None:
        raise Conflict(f"a webhook named {name!r} already exists")
