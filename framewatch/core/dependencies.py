"""Request-scoped dependencies, declared once as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import session_scope
from framewatch.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The app's runtime, for code that has the request at hand (a plain call)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def runtime_dependency(request: Request) -> Runtime:
    # `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hop on every request (10% of the live endpoint's time) to read one attribute.
    return get_runtime(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(get_runtime(request).session_factory):
        yield session


RuntimeDep = Annotated[Runtime, Depends(runtime_dependency)]
Session = Annotated[AsyncSession, Depends(get_session)]
