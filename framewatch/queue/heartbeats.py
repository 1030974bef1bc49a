"""Worker heartbeats, so that queue statistics can say which workers are alive."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.models import QueueWorker


def worker_identity(kind: str) -> str:
    """`<kind>@<host>:<pid>`: unique per process, readable in lease owners and statistics."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


async def heartbeat(session: AsyncSession, worker_id: str, kind: str) -> None:
    """Record that `worker_id` is alive now (an upsert on both databases)."""
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(QueueWorker).values(
        worker_id=worker_id, kind=kind, hostname=socket.gethostname(), pid=os.getpid(),
        started_at=now, last_seen_at=now,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["worker_id"], set_={"last_seen_at": now}
        )
    )


async def recent_workers(session: AsyncSession, within: timedelta) -> list[QueueWorker]:
    since = utcnow() - within
    return list(
        await session.scalars(
            select(QueueWorker).where(QueueWorker.last_seen_at >= since)
            .order_by(QueueWorker.worker_id)
        )
    )
