from __future__ import annotations

from fastapi import APIRouter, Response

from framewatch.auth.dependencies import ProvidersAdmin, ProvidersReader
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.errors import NotFound
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.models import DetectionProviderConfig
from framewatch.providers import service
from framewatch.providers.check import run_provider_test
from framewatch.providers.schemas import (
    DefaultProviderPut,
    ProviderCreate,
    ProviderOut,
    ProviderPatch,
    ProviderTestReport,
    ProviderTestRequest,
)

router = APIRouter(tags=["providers"])


def provider_out(config: DetectionProviderConfig) -> ProviderOut:
    return ProviderOut.model_validate(
        {**{c: getattr(config, c) for c in ProviderOut.model_fields if hasattr(config, c)},
         "has_api_key": config.api_key_encrypted is not None}
    )


@router.get("/api/v1/providers", response_model=list[ProviderOut], responses=AUTH_ERRORS)
async def list_providers(session: Session, _: ProvidersReader) -> list[ProviderOut]:
    return [provider_out(c) for c in await service.list_providers(session)]


@router.post("/api/v1/providers", response_model=ProviderOut, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_provider(
    session: Session, runtime: RuntimeDep, principal: ProvidersAdmin, body: ProviderCreate
) -> ProviderOut:
    config = await service.create_provider(session, body, runtime.secret_box,
                                           actor=principal.actor, policy=runtime.provider_policy)
    await session.commit()
    return provider_out(config)


@router.get("/api/v1/providers/{provider_id}", response_model=ProviderOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_provider(session: Session, _: ProvidersReader, provider_id: int) -> ProviderOut:
    return provider_out(await service.get_provider(session, provider_id))


@router.patch("/api/v1/providers/{provider_id}", response_model=ProviderOut,
              responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def update_provider(
    session: Session, runtime: RuntimeDep, principal: ProvidersAdmin, provider_id: int,
    body: ProviderPatch,
) -> ProviderOut:
    config = await service.update_provider(session, provider_id, body, runtime.secret_box,
                                           actor=principal.actor, policy=runtime.provider_policy)
    await session.commit()
    return provider_out(config)


@router.delete("/api/v1/providers/{provider_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def delete_provider(
    session: Session, principal: ProvidersAdmin, provider_id: int
) -> Response:
    """Delete a provider; cameras that used it fall back to the default provider."""
    await service.delete_provider(session, provider_id, actor=principal.actor)
    await session.commit()
    return Response(status_code=204)


@router.get("/api/v1/detections/provider/config", response_model=ProviderOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_default_provider_config(session: Session, _: ProvidersReader) -> ProviderOut:
    """The default provider's configuration (its API key never; a masked hint only)."""
    config = await service.get_default_provider(session)
    if config is None:
        raise NotFound("no default provider is configured; the built-in detector is used")
    return provider_out(config)


@router.put("/api/v1/detections/provider/config", response_model=ProviderOut,
            responses={**AUTH_ERRORS, **error_responses(409)})
async def put_default_provider_config(
    session: Session, runtime: RuntimeDep, principal: ProvidersAdmin, body: DefaultProviderPut
) -> ProviderOut:
    """Replace the default provider's configuration. Leave out `api_key` to keep the stored
    one; send `null` to remove it."""
    config = await service.put_default_provider(session, body, runtime.secret_box,
                                                actor=principal.actor,
                                                policy=runtime.provider_policy)
    await session.commit()
    return provider_out(config)


@router.post("/api/v1/detections/test-provider", response_model=ProviderTestReport,
             responses={**AUTH_ERRORS, **error_responses(400, 404, 413)})
async def test_provider(
    session: Session, runtime: RuntimeDep, principal: ProvidersAdmin, body: ProviderTestRequest
) -> ProviderTestReport:
    """Run a real detection through a stored or an unsaved provider and report the outcome."""
    return await run_provider_test(session, runtime, body, actor=principal.actor)
