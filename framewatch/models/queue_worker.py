from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, UTCDateTime, utcnow


class QueueWorker(Base):
    """A worker's heartbeat: in-process workers and Celery workers alike write one."""

    __tablename__ = "queue_workers"

    # "celery@host" for a Celery worker, "inprocess@host:pid" for a `framewatch serve`.
    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
