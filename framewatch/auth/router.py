from __future__ import annotations

from fastapi import APIRouter

from framewatch.auth import service
from framewatch.auth.dependencies import Admin
from framewatch.auth.schemas import KeyCreate, KeyCreated, KeyOut
from framewatch.core.dependencies import Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.get("", response_model=list[KeyOut], responses=AUTH_ERRORS)
async def list_keys(session: Session, _: Admin) -> list[KeyOut]:
    return [KeyOut.model_validate(k) for k in await service.list_keys(session)]


@router.post("", response_model=KeyCreated, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_key(session: Session, principal: Admin, body: KeyCreate) -> KeyCreated:
    row, key = await service.create_key(
        session, name=body.name, role=body.role, expires_at=body.expires_at, actor=principal.actor
    )
    await session.commit()
    return KeyCreated(**KeyOut.model_validate(row).model_dump(), key=key)


@router.delete("/{key_id}", response_model=KeyOut,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def revoke_key(session: Session, principal: Admin, key_id: int) -> KeyOut:
    """Revoke a key: it is refused from the next request on."""
    row = await service.revoke_key(session, key_id, actor=principal.actor)
    await session.commit()
    return KeyOut.model_validate(row)
