"""Request-scoped dependencies, declared once as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import session_scope
from framewatch.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(get_runtime(request).session_factory):
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Session = Annotated[AsyncSession, Depends(get_session)]
