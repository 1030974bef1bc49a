"""Short-lived WebSocket tokens: a browser opens the stream with `?token=<token>` instead of
putting its API key in a URL (where proxies and logs keep it).

A token is encrypted and authenticated with the service's secret key (Fernet, which also dates
it), and carries the key's id, role and camera scope at the time it was issued: it can never
grant more than the key had. When it is used, the key must still be valid.
"""

from __future__ import annotations

from datetime import timedelta

from framewatch.auth.permissions import Role
from framewatch.auth.schemas import WsToken
from framewatch.auth.service import Principal
from framewatch.core.database import utcnow
from framewatch.models import ApiKey
from framewatch.runtime import Runtime

TOKEN_PREFIX = "gAAAAA"  # how every Fernet token starts (its version byte, base64)


def issue_ws_token(runtime: Runtime, principal: Principal) -> WsToken:
    ttl = runtime.settings.ws_token_seconds
    scope = sorted(principal.camera_scope) if principal.camera_scope is not None else None
    token = runtime.secret_box.issue_token(
        {"use": "ws", "key_id": principal.key_id, "role": principal.role.value, "scope": scope}
    )
    return WsToken(token=token, expires_at=utcnow() + timedelta(seconds=ttl),
                   permissions=sorted(principal.permissions), camera_ids=scope)


def looks_like_ws_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


async def read_ws_token(runtime: Runtime, token: str) -> Principal | None:
    """The principal a valid, unexpired token stands for, if its key is still valid."""
    data = runtime.secret_box.read_token(token, runtime.settings.ws_token_seconds)
    if data is None or data.get("use") != "ws" or not isinstance(data.get("key_id"), int):
        return None
    async with runtime.session_factory() as session:
        row = await session.get(ApiKey, data["key_id"])
    now = utcnow()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    # The narrower of what the token says and what the key has now.
    role = Role(data["role"]) if row.role == data["role"] else None
    if role is None:
        return None
    token_scope = frozenset(data["scope"]) if data.get("scope") is not None else None
    key_scope = frozenset(row.camera_ids) if row.camera_ids is not None else None
    scope = (token_scope & key_scope if token_scope is not None and key_scope is not None
             else token_scope if token_scope is not None else key_scope)
    return Principal(key_id=row.id, name=row.name, role=role, camera_scope=scope)
