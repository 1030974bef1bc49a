from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from framewatch.auth import service
from framewatch.auth.dependencies import DetectionsReader, KeysAdmin
from framewatch.auth.permissions import Role
from framewatch.auth.schemas import KeyCreate, KeyCreated, KeyOut, KeyPatch, KeyRotate, WsToken
from framewatch.auth.wstoken import issue_ws_token
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.models import ApiKey

router = APIRouter(tags=["keys"])


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut.model_validate({
        **{field: getattr(row, field) for field in KeyOut.model_fields if hasattr(row, field)},
        "permissions": sorted(Role(row.role).permissions),
    })


@router.get("/api/v1/keys", response_model=list[KeyOut], responses=AUTH_ERRORS)
async def list_keys(session: Session, _: KeysAdmin) -> list[KeyOut]:
    """Every key, never its secret."""
    return [key_out(k) for k in await service.list_keys(session)]


@router.post("/api/v1/keys", response_model=KeyCreated, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_key(session: Session, principal: KeysAdmin, body: KeyCreate) -> KeyCreated:
    """Create a key, optionally expiring and scoped to some cameras; its secret is shown once."""
    row, key = await service.create_key(
        session, name=body.name, role=body.role, expires_at=body.expires_at,
        camera_ids=body.camera_ids, actor=principal.actor,
    )
    await session.commit()
    return KeyCreated(**key_out(row).model_dump(), key=key)


@router.patch("/api/v1/keys/{key_id}", response_model=KeyOut,
              responses={**AUTH_ERRORS, **error_responses(404)})
async def update_key(
    session: Session, runtime: RuntimeDep, principal: KeysAdmin, key_id: int, body: KeyPatch
) -> KeyOut:
    """Change a key's expiry or camera scope (effective within seconds everywhere)."""
    row = await service.update_key(session, key_id, body.model_dump(exclude_unset=True),
                                   actor=principal.actor)
    await session.commit()
    runtime.key_cache.forget_key(row.id)
    return key_out(row)


@router.post("/api/v1/keys/{key_id}/rotate", response_model=KeyCreated,
             responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def rotate_key(
    session: Session, runtime: RuntimeDep, principal: KeysAdmin, key_id: int,
    body: KeyRotate | None = None,
) -> KeyCreated:
    """Give the key a new secret (shown once); the old one works for `grace_seconds` more."""
    grace = timedelta(seconds=body.grace_seconds if body else 0)
    row, key = await service.rotate_key(session, key_id, grace=grace, actor=principal.actor)
    await session.commit()
    runtime.key_cache.forget_key(row.id)
    return KeyCreated(**key_out(row).model_dump(), key=key)


@router.delete("/api/v1/keys/{key_id}", response_model=KeyOut,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def revoke_key(
    session: Session, runtime: RuntimeDep, principal: KeysAdmin, key_id: int
) -> KeyOut:
    """Revoke a key: this process refuses it at once, every other within
    `FRAMEWATCH_AUTH_CACHE_SECONDS`."""
    row = await service.revoke_key(session, key_id, actor=principal.actor)
    await session.commit()
    runtime.key_cache.forget_key(row.id)
    return key_out(row)


@router.post("/api/v1/auth/ws-token", response_model=WsToken, responses=AUTH_ERRORS)
async def ws_token(runtime: RuntimeDep, principal: DetectionsReader) -> WsToken:
    """A short-lived token for the WebSocket (so that the key never appears in a URL), bound
    to this key's permissions and camera scope, valid `FRAMEWATCH_WS_TOKEN_SECONDS`."""
    return issue_ws_token(runtime, principal)
