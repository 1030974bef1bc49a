"""The per-provider circuit breaker in `provider_health`, on SQLite and PostgreSQL: it opens once
at the threshold (even when failures race), lets one probe through after the cool-down, re-opens
on a failed probe and closes on success, with exactly one event per transition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framewatch.core.database import create_session_factory, utcnow
from framewatch.models import ProviderHealth
from framewatch.providers import breaker
from framewatch.providers.breaker import BreakerPolicy
from tests.queue.factories import events_of, reload_health, separate_engines

POLICY = BreakerPolicy(failure_threshold=3, cooldown=timedelta(seconds=30),
                       probe_timeout=timedelta(seconds=60))
# Cools down quickly, so a probe is due after a short sleep.
QUICK = BreakerPolicy(failure_threshold=3, cooldown=timedelta(milliseconds=50),
                      probe_timeout=timedelta(seconds=60))
COOLED_DOWN = 0.15


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_session_factory(engine)() as session:
        yield session


async def fail(session: AsyncSession, provider: str, policy: BreakerPolicy = POLICY,
               *, error: str = "HTTP 503", trip: bool = False) -> bool:
    opened = await breaker.record_failure(session, provider, error, policy, trip=trip)
    await session.commit()
    return opened


async def health(session: AsyncSession, provider: str) -> ProviderHealth:
    row = await reload_health(session, provider)
    assert row is not None
    return row


async def test_closed_by_default_without_a_row(session: AsyncSession) -> None:
    assert await breaker.permit(session, "deepstack", POLICY) is None
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(ProviderHealth)) == 0
    assert await breaker.breaker_states(session) == []


async def test_failures_below_the_threshold_keep_it_closed(session: AsyncSession) -> None:
    assert await fail(session, "deepstack", error="HTTP 502") is False
    before = utcnow()
    assert await fail(session, "deepstack", error="timeout") is False
    row = await health(session, "deepstack")
    assert (row.state, row.consecutive_failures, row.last_error) == ("closed", 2, "timeout")
    assert row.last_failure_at is not None and row.last_failure_at >= before
    assert (row.opened_at, row.open_until) == (None, None)
    assert await breaker.permit(session, "deepstack", POLICY) is None
    assert await events_of(session, "provider.down") == []


async def test_opens_once_at_the_threshold(session: AsyncSession) -> None:
    for _ in range(2):
        await fail(session, "deepstack")
    before = utcnow()
    assert await fail(session, "deepstack", error="connection refused") is True
    after = utcnow()
    row = await health(session, "deepstack")
    assert (row.state, row.consecutive_failures) == ("open", 3)
    assert row.opened_at is not None and before <= row.opened_at <= after
    assert row.open_until == row.opened_at + POLICY.cooldown
    assert await breaker.permit(session, "deepstack", POLICY) == row.open_until

    assert await fail(session, "deepstack") is False  # already open: no second event
    assert (await health(session, "deepstack")).consecutive_failures == 4
    [event] = await events_of(session, "provider.down")
    assert (event.provider, event.severity) == ("deepstack", "error")
    assert event.payload == {"consecutive_failures": 3, "error": "connection refused",
                             "cooldown_seconds": 30.0}


@pytest.mark.parametrize(("threshold", "earlier"), [(1, 0), (2, 0), (2, 1), (3, 1)])
async def test_concurrent_failures_open_it_exactly_once(
    session: AsyncSession, any_database_url: str, threshold: int, earlier: int
) -> None:
    policy = BreakerPolicy(failure_threshold=threshold, cooldown=timedelta(seconds=30))

    async def fail_in(factory: async_sessionmaker[AsyncSession], provider: str) -> bool:
        async with factory() as own:
            return await fail(own, provider, policy)

    async with separate_engines(any_database_url, 2) as (one, two):
        for round_ in range(5):
            provider = f"provider-{round_}"
            for _ in range(earlier):
                assert await fail(session, provider, policy) is False
            opened = await asyncio.gather(fail_in(one, provider), fail_in(two, provider))
            assert sorted(opened) == [False, True], provider
            row = await health(session, provider)
            assert (row.state, row.consecutive_failures) == ("open", earlier + 2)
            assert len(await events_of(session, "provider.down", provider)) == 1


async def test_only_one_concurrent_caller_probes_after_the_cooldown(
    session: AsyncSession, any_database_url: str
) -> None:
    assert await fail(session, "deepstack", QUICK, trip=True) is True
    await asyncio.sleep(COOLED_DOWN)

    async def permit_in(factory: async_sessionmaker[AsyncSession]) -> datetime | None:
        async with factory() as own:
            answer = await breaker.permit(own, "deepstack", QUICK)
            await own.commit()
            return answer

    before = utcnow()
    async with separate_engines(any_database_url, 4) as factories:
        answers = await asyncio.gather(*(permit_in(factory) for factory in factories))
    after = utcnow()
    assert answers.count(None) == 1, answers
    for answer in answers:
        assert answer is None or answer >= before + timedelta(seconds=1)
    row = await health(session, "deepstack")
    assert row.state == "open" and row.probe_until is not None
    assert before + QUICK.probe_timeout <= row.probe_until <= after + QUICK.probe_timeout
    # While the probe runs, later callers wait as well.
    assert await breaker.permit(session, "deepstack", QUICK) is not None


async def test_failed_probe_reopens_without_a_second_down_event(session: AsyncSession) -> None:
    await fail(session, "deepstack", QUICK, trip=True)
    await asyncio.sleep(COOLED_DOWN)
    assert await breaker.permit(session, "deepstack", QUICK) is None  # the probe
    await session.commit()

    # The probe fails (under a long cool-down, so that "still open" cannot race the clock).
    before = utcnow()
    assert await fail(session, "deepstack", POLICY, error="still down") is False
    after = utcnow()
    row = await health(session, "deepstack")
    assert (row.state, row.probe_until, row.last_error) == ("open", None, "still down")
    assert row.open_until is not None
    assert before + POLICY.cooldown <= row.open_until <= after + POLICY.cooldown
    assert await breaker.permit(session, "deepstack", POLICY) == row.open_until
    assert len(await events_of(session, "provider.down")) == 1

    # Once that cool-down is over too, the next caller probes again.
    await session.execute(update(ProviderHealth).where(ProviderHealth.provider == "deepstack")
                          .values(open_until=utcnow() - timedelta(seconds=1)))
    await session.commit()
    assert await breaker.permit(session, "deepstack", POLICY) is None
    assert len(await events_of(session, "provider.down")) == 1


async def test_success_while_open_closes_it_with_one_event(session: AsyncSession) -> None:
    await fail(session, "deepstack", trip=True)
    before = utcnow()
    assert await breaker.record_success(session, "deepstack") is True
    await session.commit()
    row = await health(session, "deepstack")
    assert (row.state, row.consecutive_failures, row.open_until, row.probe_until) == (
        "closed", 0, None, None)
    assert row.last_success_at is not None and row.last_success_at >= before
    assert await breaker.permit(session, "deepstack", POLICY) is None

    assert await breaker.record_success(session, "deepstack") is False
    await session.commit()
    [event] = await events_of(session, "provider.recovered")
    assert event.provider == "deepstack"
    assert len(await events_of(session, "provider.down")) == 1


async def test_success_while_closed_writes_nothing_unless_failures_were_counted(
    session: AsyncSession,
) -> None:
    assert await breaker.record_success(session, "unknown") is False
    await session.commit()
    assert await reload_health(session, "unknown") is None

    await breaker.mark_checked(session, "quiet")
    await session.commit()
    untouched = await health(session, "quiet")
    stamp = untouched.updated_at
    assert await breaker.record_success(session, "quiet") is False
    await session.commit()
    row = await health(session, "quiet")
    assert (row.updated_at, row.last_success_at, row.consecutive_failures) == (stamp, None, 0)

    await fail(session, "flaky")
    await fail(session, "flaky")
    assert await breaker.record_success(session, "flaky") is False
    await session.commit()
    row = await health(session, "flaky")
    assert (row.state, row.consecutive_failures) == ("closed", 0)
    assert row.last_success_at is not None
    assert await events_of(session, "provider.recovered") == []
    # The count starts again: two more failures do not reach the threshold of three.
    await fail(session, "flaky")
    assert await fail(session, "flaky") is False
    assert (await health(session, "flaky")).state == "closed"


async def test_trip_opens_at_once(session: AsyncSession) -> None:
    policy = BreakerPolicy(failure_threshold=5, cooldown=timedelta(seconds=30))
    assert await fail(session, "compreface", policy, error="HTTP 401", trip=True) is True
    row = await health(session, "compreface")
    assert (row.state, row.consecutive_failures, row.last_error) == ("open", 1, "HTTP 401")
    assert await breaker.permit(session, "compreface", policy) == row.open_until
    [event] = await events_of(session, "provider.down")
    assert event.payload["consecutive_failures"] == 1


async def test_mark_checked_records_when(session: AsyncSession) -> None:
    before = utcnow()
    await breaker.mark_checked(session, "deepstack")
    await session.commit()
    row = await health(session, "deepstack")
    first = row.last_checked_at
    assert first is not None and first >= before
    assert (row.state, row.consecutive_failures) == ("closed", 0)
    await fail(session, "deepstack")
    await breaker.mark_checked(session, "deepstack")
    await session.commit()
    row = await health(session, "deepstack")
    assert row.last_checked_at is not None and row.last_checked_at > first
    assert row.consecutive_failures == 1  # a check changes nothing else
    assert [state.provider for state in await breaker.breaker_states(session)] == ["deepstack"]
