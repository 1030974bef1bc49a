"""The durable queue's transitions, on SQLite and PostgreSQL: enqueue, claims with a lease (and two
workers claiming at once), finishing only while holding the lease, retries with backoff,
dead-lettering, deferring, releasing, requeueing and finding what needs dispatching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framewatch.core.database import create_session_factory, utcnow
from framewatch.core.errors import Conflict, NotFound
from framewatch.models import QueueItem
from framewatch.models.frame import FRAME_FAILED, FRAME_QUEUED, FRAME_RECEIVED
from framewatch.queue import service as queue
from framewatch.queue.service import RetryPolicy
from tests.queue.factories import (
    LEASE,
    claim_ids,
    claimed,
    enqueue,
    events_of,
    reload_frame,
    reload_item,
    row_state,
    separate_engines,
)

TINY_LEASE = timedelta(milliseconds=50)
POLICY = RetryPolicy(max_attempts=5, base_seconds=10, max_seconds=600)


@pytest.fixture
def factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
async def session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        yield session


async def test_enqueue_is_pending_and_due_now(session: AsyncSession) -> None:
    before = utcnow()
    [item] = await enqueue(session, max_attempts=4)
    after = utcnow()
    stored = await reload_item(session, item.id)
    assert (stored.status, stored.attempts, stored.max_attempts) == ("pending", 0, 4)
    assert before <= stored.next_attempt_at <= after
    assert (stored.detection_types, stored.lease_owner, stored.lease_expires_at) == (
        ["person"], None, None)
    assert (stored.finished_at, stored.dispatched_at, stored.last_error) == (None, None, None)
    assert await queue.find_undispatched(session, redispatch_after=LEASE, limit=10) == [item.id]


async def test_non_retryable_enqueue_is_dead_at_once(session: AsyncSession) -> None:
    before = utcnow()
    [item] = await enqueue(session, retryable=False, last_error="HTTP 400", attempts=1)
    after = utcnow()
    stored = await reload_item(session, item.id)
    assert (stored.status, stored.attempts, stored.last_error) == ("dead", 1, "HTTP 400")
    assert stored.finished_at is not None and before <= stored.finished_at <= after
    assert await queue.claim_due_items(session, "w1", LEASE, 10) == []
    assert await queue.claim_item(session, item.id, "w1", LEASE) is None


async def test_claim_due_items_takes_oldest_due_first_up_to_limit(session: AsyncSession) -> None:
    now = utcnow()
    newer, oldest, middle, future = [
        (await enqueue(session, not_before=now + offset))[0]
        for offset in (-timedelta(minutes=1), -timedelta(minutes=3), -timedelta(minutes=2),
                       timedelta(hours=1))
    ]
    before = utcnow()
    first = await queue.claim_due_items(session, "w1", LEASE, limit=2)
    after = utcnow()
    await session.commit()
    assert sorted(item.id for item in first) == sorted([oldest.id, middle.id])
    for item in first:
        stored = await reload_item(session, item.id)
        assert (stored.status, stored.lease_owner, stored.attempts) == ("processing", "w1", 1)
        assert stored.lease_expires_at is not None
        assert before + LEASE <= stored.lease_expires_at <= after + LEASE
    rest = await queue.claim_due_items(session, "w2", LEASE, limit=10)
    await session.commit()
    assert [item.id for item in rest] == [newer.id]
    assert await queue.claim_due_items(session, "w3", LEASE, limit=10) == []
    stored_future = await reload_item(session, future.id)
    assert (stored_future.status, stored_future.attempts) == ("pending", 0)
    # Equally due: the lowest id first.
    tied = await enqueue(session, 3, not_before=now - timedelta(seconds=5))
    taken = await queue.claim_due_items(session, "w4", LEASE, limit=1)
    assert [item.id for item in taken] == [tied[0].id]


async def test_claimed_objects_carry_the_claim_even_when_already_in_the_session(
    session: AsyncSession,
) -> None:
    # The worker passes what it claimed to mark_failed, which decides on `attempts`.
    items = await enqueue(session, 2)
    single = await queue.claim_item(session, items[0].id, "w1", LEASE)
    due = await queue.claim_due_items(session, "w1", LEASE, limit=5)
    assert single is not None
    assert (single.status, single.attempts, single.lease_owner) == ("processing", 1, "w1")
    assert [(item.id, item.status, item.attempts, item.lease_owner) for item in due] == [
        (items[1].id, "processing", 1, "w1")]


async def test_two_concurrent_claimers_never_share_an_item(
    session: AsyncSession, any_database_url: str
) -> None:
    all_ids = {item.id for item in await enqueue(session, 50)}
    owner: dict[int, str] = {}
    async with separate_engines(any_database_url, 2) as (one, two):
        for _ in range(5):
            first, second = await asyncio.gather(claim_ids(one, "w1", 5),
                                                 claim_ids(two, "w2", 5))
            # Each skips what the other holds and takes the next due ones: 5 each, never shared.
            assert (len(first), len(second)) == (5, 5)
            assert not set(first) & set(second)
            assert not (set(first) | set(second)) & set(owner), "claimed again"
            owner.update({item_id: "w1" for item_id in first})
            owner.update({item_id: "w2" for item_id in second})
        assert await asyncio.gather(claim_ids(one, "w1", 5), claim_ids(two, "w2", 5)) == [
            [], []]
    assert set(owner) == all_ids
    for item_id, worker in owner.items():
        stored = await reload_item(session, item_id)
        assert (stored.status, stored.lease_owner, stored.attempts) == ("processing", worker, 1)


@pytest.mark.parametrize("state", ["done", "dead", "leased", "not_due"])
async def test_claim_item_refuses_items_not_claimable(session: AsyncSession, state: str) -> None:
    if state == "not_due":
        [item] = await enqueue(session, not_before=utcnow() + timedelta(minutes=5))
    elif state == "dead":
        [item] = await enqueue(session, retryable=False)
    else:
        [item] = await enqueue(session)
        await claimed(session, item, "other")
        if state == "done":
            assert await queue.mark_done(session, item, "other")
            await session.commit()
    snapshot = await row_state(session, item.id)
    assert await queue.claim_item(session, item.id, "w1", LEASE) is None
    await session.commit()
    assert await row_state(session, item.id) == snapshot
    expected = {"done": "done", "dead": "dead", "leased": "processing", "not_due": "pending"}
    assert snapshot["status"] == expected[state]


async def test_claim_item_again_once_the_lease_expired(session: AsyncSession) -> None:
    [item] = await enqueue(session)
    first = await claimed(session, item, "w1", TINY_LEASE)
    assert (first.attempts, first.lease_owner) == (1, "w1")
    # (A live lease refusing a claim: test_claim_item_refuses_items_not_claimable[leased].)
    await asyncio.sleep(0.15)
    before = utcnow()
    second = await claimed(session, item, "w2")
    stored = await reload_item(session, item.id)
    assert (second.attempts, stored.attempts) == (2, 2)
    assert (stored.status, stored.lease_owner) == ("processing", "w2")
    assert stored.lease_expires_at is not None and stored.lease_expires_at >= before + LEASE


async def test_worker_whose_lease_was_taken_over_changes_nothing(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    async with factory() as old_worker, factory() as new_worker, factory() as check:
        [item] = await enqueue(check)
        mine = await claimed(old_worker, item, "w-old", TINY_LEASE)
        await asyncio.sleep(0.15)
        theirs = await claimed(new_worker, item, "w-new")
        snapshot = await row_state(check, item.id)
        assert (snapshot["lease_owner"], snapshot["attempts"]) == ("w-new", 2)

        assert await queue.mark_done(old_worker, mine, "w-old") is False
        for retryable in (True, False):
            assert await queue.mark_failed(old_worker, mine, "w-old", "late", retryable=retryable,
                                           policy=POLICY, provider="p") is None
        later = utcnow() + timedelta(minutes=5)
        assert await queue.defer(old_worker, mine, "w-old", later) is False
        await old_worker.commit()

        assert await row_state(check, item.id) == snapshot
        assert await events_of(check, "queue.retry") == []
        assert await events_of(check, "queue.dead_letter") == []
        assert (await reload_frame(check, item.frame_id)).status == FRAME_RECEIVED

        assert await queue.mark_done(new_worker, theirs, "w-new") is True
        await new_worker.commit()
        done = await reload_item(check, item.id)
        assert (done.status, done.lease_owner, done.lease_expires_at) == ("done", None, None)
        assert done.finished_at is not None and done.attempts == 2


@pytest.mark.parametrize(
    ("attempts_before", "base", "cap", "ceiling"),
    [(0, 10.0, 600.0, 10.0), (2, 10.0, 600.0, 40.0), (3, 100.0, 150.0, 150.0)],
)
async def test_mark_failed_retryable_backs_off(
    session: AsyncSession, attempts_before: int, base: float, cap: float, ceiling: float
) -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=base, max_seconds=cap)
    [item] = await enqueue(session, attempts=attempts_before)
    mine = await claimed(session, item, "w1")
    await queue.mark_dispatched(session, [item.id])
    await session.commit()
    assert (await reload_item(session, item.id)).dispatched_at is not None

    before = utcnow()
    status = await queue.mark_failed(session, mine, "w1", "HTTP 503", retryable=True,
                                     policy=policy, provider="deepstack")
    after = utcnow()
    await session.commit()

    assert status == "pending"
    stored = await reload_item(session, item.id)
    assert (stored.status, stored.attempts, stored.last_error) == (
        "pending", attempts_before + 1, "HTTP 503")
    backoff = timedelta(seconds=ceiling)
    assert before + backoff / 2 <= stored.next_attempt_at <= after + backoff
    assert (stored.dispatched_at, stored.lease_owner, stored.finished_at) == (None, None, None)
    [event] = await events_of(session, "queue.retry")
    assert (event.severity, event.camera_id, event.frame_id, event.provider) == (
        "warning", item.camera_id, item.frame_id, "deepstack")
    assert event.payload == {
        "queue_item_id": item.id, "attempts": attempts_before + 1, "max_attempts": 5,
        "error": "HTTP 503", "next_attempt_at": str(stored.next_attempt_at),
    }
    assert (await reload_frame(session, item.frame_id)).status == FRAME_RECEIVED
    assert await queue.claim_item(session, item.id, "w2", LEASE) is None


@pytest.mark.parametrize(
    ("attempts_before", "retryable", "reason"),
    [(2, True, "attempts exhausted"), (0, False, "not retryable")],
)
async def test_mark_failed_dead_letters(
    session: AsyncSession, attempts_before: int, retryable: bool, reason: str
) -> None:
    [item] = await enqueue(session, max_attempts=3, attempts=attempts_before)
    mine = await claimed(session, item, "w1")
    before = utcnow()
    status = await queue.mark_failed(session, mine, "w1", "timeout", retryable=retryable,
                                     policy=POLICY, provider="deepstack")
    after = utcnow()
    await session.commit()
    assert status == "dead"
    stored = await reload_item(session, item.id)
    assert (stored.status, stored.attempts, stored.last_error, stored.lease_owner) == (
        "dead", attempts_before + 1, "timeout", None)
    assert stored.finished_at is not None and before <= stored.finished_at <= after
    assert (await reload_frame(session, item.frame_id)).status == FRAME_FAILED
    [event] = await events_of(session, "queue.dead_letter")
    assert (event.severity, event.provider, event.frame_id) == ("error", "deepstack",
                                                                item.frame_id)
    assert event.payload == {"queue_item_id": item.id, "attempts": attempts_before + 1,
                             "max_attempts": 3, "error": "timeout", "reason": reason}
    assert reason in event.message
    assert await events_of(session, "queue.retry") == []


async def test_defer_hands_back_without_spending_an_attempt(session: AsyncSession) -> None:
    [item] = await enqueue(session, attempts=1)
    mine = await claimed(session, item, "w1")
    assert mine.attempts == 2
    await queue.mark_dispatched(session, [item.id])
    until = utcnow() + timedelta(minutes=2)
    assert await queue.defer(session, mine, "w1", until) is True
    await session.commit()
    stored = await reload_item(session, item.id)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("pending", 1, until)
    assert (stored.lease_owner, stored.lease_expires_at, stored.dispatched_at) == (None,) * 3
    assert await queue.claim_item(session, item.id, "w1", LEASE) is None
    assert await events_of(session, "queue.retry") == []


async def test_release_leases_hands_back_only_that_workers_items(session: AsyncSession) -> None:
    mine_a, mine_b, theirs, waiting, finished = await enqueue(session, 5)
    for item in (mine_a, mine_b, finished):
        await claimed(session, item, "w1")
    await claimed(session, theirs, "w2")
    assert await queue.mark_done(session, finished, "w1")
    await session.commit()

    before = utcnow()
    assert await queue.release_leases(session, "w1") == 2
    after = utcnow()
    await session.commit()
    for item in (mine_a, mine_b):
        stored = await reload_item(session, item.id)
        assert (stored.status, stored.attempts, stored.lease_owner) == ("pending", 0, None)
        assert before <= stored.next_attempt_at <= after
    other = await reload_item(session, theirs.id)
    assert (other.status, other.lease_owner, other.attempts) == ("processing", "w2", 1)
    assert [(row.status, row.attempts) for row in [await reload_item(session, waiting.id),
            await reload_item(session, finished.id)]] == [("pending", 0), ("done", 1)]
    assert await queue.release_leases(session, "w1") == 0


async def test_requeue_gives_a_dead_item_fresh_attempts(session: AsyncSession) -> None:
    [item] = await enqueue(session, max_attempts=1)
    mine = await claimed(session, item, "w1")
    assert await queue.mark_failed(session, mine, "w1", "boom", retryable=True, policy=POLICY,
                                   provider=None) == "dead"
    await session.commit()
    assert (await reload_frame(session, item.frame_id)).status == FRAME_FAILED

    before = utcnow()
    requeued = await queue.requeue(session, item.id, actor="alice")
    after = utcnow()
    await session.commit()
    stored = await reload_item(session, item.id)
    assert (requeued.status, stored.status, stored.attempts) == ("pending", "pending", 0)
    assert before <= stored.next_attempt_at <= after
    assert (stored.finished_at, stored.dispatched_at) == (None, None)
    assert (await reload_frame(session, item.frame_id)).status == FRAME_QUEUED
    [event] = await events_of(session, "queue.requeued")
    assert (event.actor, event.camera_id, event.frame_id) == ("alice", "cam-a", item.frame_id)
    assert event.payload == {"queue_item_id": item.id}
    again = await queue.claim_item(session, item.id, "w2", LEASE)
    assert again is not None and again.attempts == 1


@pytest.mark.parametrize("state", ["pending", "processing", "done"])
async def test_requeue_refuses_items_that_are_not_dead(session: AsyncSession, state: str) -> None:
    [item] = await enqueue(session)
    item_id = item.id
    if state != "pending":
        mine = await claimed(session, item, "w1")
        if state == "done":
            assert await queue.mark_done(session, mine, "w1")
            await session.commit()
    with pytest.raises(Conflict) as raised:
        await queue.requeue(session, item_id, actor="alice")
    assert list(raised.value.extra.values()) == [state]
    await session.rollback()
    assert (await reload_item(session, item_id)).status == state
    assert await events_of(session, "queue.requeued") == []
    with pytest.raises(NotFound):
        await queue.requeue(session, item_id + 1000, actor="alice")


async def test_requeue_dead_all_or_of_one_camera(session: AsyncSession) -> None:
    dead_a = await enqueue(session, 2, camera_id="cam-a", retryable=False)
    [pending_a] = await enqueue(session, camera_id="cam-a")
    [dead_b] = await enqueue(session, camera_id="cam-b", retryable=False)

    assert await queue.requeue_dead(session, actor="bob", camera_id="cam-b") == [dead_b.id]
    await session.commit()
    assert (await reload_item(session, dead_b.id)).status == "pending"
    assert [(await reload_item(session, item.id)).status for item in dead_a] == ["dead", "dead"]
    [event] = await events_of(session, "queue.requeued")
    assert (event.actor, event.camera_id) == ("bob", "cam-b")
    assert event.payload == {"queue_item_ids": [dead_b.id], "count": 1}

    ids = await queue.requeue_dead(session, actor="ops")
    await session.commit()
    assert ids == [item.id for item in dead_a]
    for item in dead_a:
        stored = await reload_item(session, item.id)
        assert (stored.status, stored.attempts, stored.finished_at) == ("pending", 0, None)
        assert (await reload_frame(session, item.frame_id)).status == FRAME_QUEUED
    assert (await reload_frame(session, pending_a.frame_id)).status == FRAME_RECEIVED
    assert await queue.requeue_dead(session, actor="ops") == []
    assert len(await events_of(session, "queue.requeued")) == 2


async def test_find_undispatched(session: AsyncSession) -> None:
    now = utcnow()
    (never, recent, stale, orphan, orphan_redispatched, live, done, future) = await enqueue(
        session, 8, not_before=now - timedelta(seconds=30))
    await queue.mark_dispatched(session, [recent.id])

    def leased(expires_in: float, dispatched_ago: float) -> dict[str, object]:
        return {"status": "processing", "lease_owner": "w", "dispatched_at":
                now - timedelta(seconds=dispatched_ago),
                "lease_expires_at": now + timedelta(seconds=expires_in)}

    changes: dict[QueueItem, dict[str, object]] = {
        stale: {"dispatched_at": now - timedelta(minutes=5)},
        orphan: leased(-10, 20),  # lease ran out after its last dispatch
        orphan_redispatched: leased(-10, 5),  # dispatched again since then
        live: leased(60, 300),
        done: {"status": "done", "finished_at": now},
        future: {"next_attempt_at": now + timedelta(minutes=1)},
    }
    for item, values in changes.items():
        await session.execute(update(QueueItem).where(QueueItem.id == item.id).values(**values)
                              .execution_options(synchronize_session=False))
    await session.commit()
    assert (await reload_item(session, recent.id)).dispatched_at is not None

    found = await queue.find_undispatched(session, redispatch_after=timedelta(minutes=1),
                                          limit=10)
    assert sorted(found) == sorted([never.id, stale.id, orphan.id])
    assert await queue.find_undispatched(session, redispatch_after=timedelta(minutes=1),
                                         limit=1) == [never.id]
    # With a shorter threshold the recently dispatched item counts as lost as well.
    await asyncio.sleep(0.05)
    shorter = await queue.find_undispatched(session, redispatch_after=timedelta(milliseconds=10),
                                            limit=10)
    assert sorted(shorter) == sorted([never.id, recent.id, stale.id, orphan.id,
                                      orphan_redispatched.id])


def test_retry_policy_delay_stays_within_equal_jitter_bounds() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=5, max_seconds=600)
    for attempts, ceiling in [(0, 5), (1, 5), (2, 10), (3, 20), (5, 80), (7, 320), (8, 600),
                              (30, 600)]:
        samples = [policy.delay(attempts).total_seconds() for _ in range(500)]
        assert all(ceiling / 2 <= sample <= ceiling for sample in samples), attempts
        # Jitter spreads them over the whole band (0.9^500 odds of missing either end).
        assert min(samples) < ceiling * 0.55 and max(samples) > ceiling * 0.95, attempts
