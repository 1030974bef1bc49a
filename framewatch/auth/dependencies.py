"""`Principal` dependencies: `Viewer`, `Operator` and `Admin` require at least that role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from framewatch.auth.service import Principal, Role, authenticate
from framewatch.core.dependencies import Session
from framewatch.core.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        session: Session,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise Unauthorized("an API key is required: `Authorization: Bearer <key>`")
        principal = await authenticate(session, credentials.credentials)
        if principal is None:
            raise Unauthorized("the API key is unknown, revoked or expired")
        if not principal.role.allows(role):
            raise Forbidden(
                f"this needs the {role.value} role; the key has {principal.role.value}",
                required_role=role.value,
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
