"""A circuit breaker per provider, shared by every process through the `provider_health` table.

Closed: calls go ahead; consecutive failures are counted. At `failure_threshold` it opens (one
`provider.down` event, written by whichever process tripped it). Open: no calls until the
cool-down ends; queue items wait without spending attempts. Then one caller at a time gets to
probe: success closes it (`provider.recovered`), failure opens it for another cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.database import utcnow
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import ProviderHealth
from framewatch.models.provider_health import BREAKER_CLOSED, BREAKER_OPEN


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    # How long a probe call may take before another caller may probe instead.
    probe_timeout: timedelta = timedelta(seconds=60)


async def permit(session: AsyncSession, provider: str, policy: BreakerPolicy) -> datetime | None:
    """None when a call to `provider` may go ahead; otherwise when to try again."""
    row = await session.scalar(
        select(ProviderHealth).where(ProviderHealth.provider == provider)
        .execution_options(populate_existing=True)
    )
    if row is None or row.state == BREAKER_CLOSED:
        return None
    now = utcnow()
    if row.open_until is not None and row.open_until > now:
        return row.open_until
    # Half-open: the caller that sets `probe_until` makes the one trial call.
    probing = await session.execute(
        update(ProviderHealth)
        .where(
            ProviderHealth.provider == provider,
            ProviderHealth.state == BREAKER_OPEN,
            or_(ProviderHealth.probe_until.is_(None), ProviderHealth.probe_until < now),
        )
        .values(probe_until=now + policy.probe_timeout)
        .execution_options(synchronize_session=False)
    )
    if probing.rowcount:  # type: ignore[attr-defined]
        return None
    wait = min(policy.cooldown, policy.probe_timeout) / 4
    return now + max(wait, timedelta(seconds=1))


async def record_success(session: AsyncSession, provider: str) -> bool:
    """Reset the failure count; close an open breaker (writes `provider.recovered`).
    Returns True when this call closed it. Writes nothing in the common all-is-well case."""
    now = utcnow()
    closed = await session.execute(
        update(ProviderHealth)
        .where(ProviderHealth.provider == provider, ProviderHealth.state == BREAKER_OPEN)
        .values(state=BREAKER_CLOSED, consecutive_failures=0, open_until=None, probe_until=None,
                last_success_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if closed.rowcount:  # type: ignore[attr-defined]
        record_event(session, EventType.PROVIDER_RECOVERED,
                     f"provider {provider!r} answers again; calls resume", provider=provider)
        return True
    await session.execute(
        update(ProviderHealth)
        .where(ProviderHealth.provider == provider, ProviderHealth.consecutive_failures > 0)
        .values(consecutive_failures=0, last_success_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return False


async def record_failure(
    session: AsyncSession, provider: str, error: str, policy: BreakerPolicy, *, trip: bool = False
) -> bool:
    """Count a failure (a failed probe re-opens the breaker for another cool-down); open the
    breaker at the threshold, or at once with `trip`. Returns True when this call opened it."""
    now = utcnow()
    await _ensure_row(session, provider)
    row = (
        await session.execute(
            update(ProviderHealth)
            .where(ProviderHealth.provider == provider)
            .values(consecutive_failures=ProviderHealth.consecutive_failures + 1,
                    last_error=error[:2000], last_failure_at=now, updated_at=now)
            .returning(ProviderHealth.consecutive_failures, ProviderHealth.state)
        )
    ).one()
    if row.state == BREAKER_OPEN:
        await session.execute(
            update(ProviderHealth)
            .where(ProviderHealth.provider == provider, ProviderHealth.state == BREAKER_OPEN)
            .values(open_until=now + policy.cooldown, probe_until=None)
            .execution_options(synchronize_session=False)
        )
        return False
    if not trip and row.consecutive_failures < policy.failure_threshold:
        return False
    opened = await session.execute(
        update(ProviderHealth)
        .where(ProviderHealth.provider == provider, ProviderHealth.state == BREAKER_CLOSED)
        .values(state=BREAKER_OPEN, opened_at=now, open_until=now + policy.cooldown,
                probe_until=None)
        .execution_options(synchronize_session=False)
    )
    if not opened.rowcount:  # type: ignore[attr-defined]
        return False
    record_event(
        session, EventType.PROVIDER_DOWN,
        f"provider {provider!r} is failing ({row.consecutive_failures} failures in a row); "
        f"calls paused for {policy.cooldown.total_seconds():.0f} s",
        severity=Severity.ERROR, provider=provider,
        payload={"consecutive_failures": row.consecutive_failures, "error": error[:500],
                 "cooldown_seconds": policy.cooldown.total_seconds()},
    )
    return True


async def mark_checked(session: AsyncSession, provider: str) -> None:
    await _ensure_row(session, provider)
    await session.execute(
        update(ProviderHealth).where(ProviderHealth.provider == provider)
        .values(last_checked_at=utcnow()).execution_options(synchronize_session=False)
    )


async def breaker_states(session: AsyncSession) -> list[ProviderHealth]:
    return list(await session.scalars(select(ProviderHealth).order_by(ProviderHealth.provider)))


async def _ensure_row(session: AsyncSession, provider: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(ProviderHealth)
        .values(provider=provider, state=BREAKER_CLOSED, consecutive_failures=0,
                updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["provider"])
    )
