"""Webhook endpoints under /api/v1/webhooks (all need `webhooks:admin`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from framewatch.auth.dependencies import WebhooksAdmin
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.models import WebhookSubscription
from framewatch.webhooks import deliveries, service
from framewatch.webhooks.runner import send_ping
from framewatch.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    WebhookCreate,
    WebhookOut,
    WebhookPatch,
    WebhookWithSecret,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

DeliveryStatus = Literal["pending", "processing", "delivered", "dead"]


def with_secret(row: WebhookSubscription, secret: str | None) -> WebhookWithSecret:
    return WebhookWithSecret.model_validate(
        {**WebhookOut.model_validate(row).model_dump(), "secret": secret})


@router.get("", response_model=list[WebhookOut], responses=AUTH_ERRORS)
async def list_webhooks(session: Session, _: WebhooksAdmin) -> list[WebhookOut]:
    return [WebhookOut.model_validate(row) for row in await service.list_webhooks(session)]


@router.post("", response_model=WebhookWithSecret, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_webhook(
    session: Session, runtime: RuntimeDep, principal: WebhooksAdmin, body: WebhookCreate
) -> WebhookWithSecret:
    """Subscribe a receiver. Without `secret`, one is generated and shown in this answer only."""
    row, generated = await service.create_webhook(
        session, body, runtime.secret_box, runtime.provider_policy, actor=principal.actor)
    await session.commit()
    return with_secret(row, generated)


@router.get("/{webhook_id}", response_model=WebhookOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_webhook(session: Session, _: WebhooksAdmin, webhook_id: int) -> WebhookOut:
    return WebhookOut.model_validate(await service.get_webhook(session, webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookWithSecret,
              responses={**AUTH_ERRORS, **error_responses(400, 404, 409)})
async def update_webhook(
    session: Session, runtime: RuntimeDep, principal: WebhooksAdmin, webhook_id: int,
    body: WebhookPatch,
) -> WebhookWithSecret:
    """Change a subscription; `null` clears a camera, type or person filter."""
    row, generated = await service.update_webhook(
        session, webhook_id, body, runtime.secret_box, runtime.provider_policy,
        actor=principal.actor)
    await session.commit()
    return with_secret(row, generated)


@router.delete("/{webhook_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def delete_webhook(session: Session, principal: WebhooksAdmin, webhook_id: int) -> Response:
    """Delete a subscription and its deliveries (pending ones are not sent)."""
    await service.delete_webhook(session, webhook_id, actor=principal.actor)
    await session.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def list_deliveries(
    session: Session,
    _: WebhooksAdmin,
    webhook_id: int,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> DeliveryPage:
    """The delivery history, newest first: status, attempts, last answer, the body sent."""
    await service.get_webhook(session, webhook_id)
    rows, next_cursor = await deliveries.list_deliveries(
        session, webhook_id, status=status, limit=limit, before_id=before_id)
    return DeliveryPage(items=[DeliveryOut.model_validate(r) for r in rows],
                        next_cursor=next_cursor)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut,
             responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def redeliver(
    session: Session, principal: WebhooksAdmin, webhook_id: int, delivery_id: int
) -> DeliveryOut:
    """Send a delivered or dead delivery again (same id and body, fresh attempts)."""
    await service.get_webhook(session, webhook_id)
    delivery = await deliveries.get_delivery(session, webhook_id, delivery_id)
    delivery = await deliveries.redeliver(session, delivery, actor=principal.actor)
    await session.commit()
    return DeliveryOut.model_validate(delivery)


@router.post("/{webhook_id}/ping", response_model=DeliveryOut,
             responses={**AUTH_ERRORS, **error_responses(404)})
async def ping(
    session: Session, runtime: RuntimeDep, _: WebhooksAdmin, webhook_id: int
) -> DeliveryOut:
    """Send a `ping` delivery now (even to a disabled webhook) and answer with its first
    attempt's outcome; if it failed, it is retried like any delivery."""
    row = await service.get_webhook(session, webhook_id)
    await session.commit()
    return DeliveryOut.model_validate(await send_ping(runtime, row))
