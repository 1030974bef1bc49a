from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, UTCDateTime, utcnow

BREAKER_CLOSED = "closed"
BREAKER_OPEN = "open"


class ProviderHealth(Base):
    """A provider's circuit breaker and last health check, shared by every process.

    Keyed by provider name, so that the built-in fallback (which has no configuration row) has one
    too. Rows are created on first use.
    """

    __tablename__ = "provider_health"

    provider: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=BREAKER_CLOSED)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # While open, no calls until then; afterwards one probe call at a time (`probe_until`).
    open_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probe_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
