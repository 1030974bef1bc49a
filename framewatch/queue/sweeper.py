"""The `process_detection_queue` job: find due and orphaned items nobody was asked to run
recently and dispatch them, so that a message lost by the broker (a Redis flush, a restart) or a
worker killed mid-item costs time, never the item."""

from __future__ import annotations

from typing import Any

from framewatch.queue.service import find_undispatched, mark_dispatched
from framewatch.runtime import Runtime

SWEEP_BATCH = 1000


async def sweep(runtime: Runtime) -> dict[str, Any]:
    dispatched = 0
    # While the broker still holds many messages, items dispatched long ago are most likely
    # among them: sending them again would only add duplicates. A flushed or restarted broker
    # has an empty (or unknown) queue, and then they are sent again.
    backlog = await runtime.dispatcher.backlog()
    resend_stale = backlog is None or backlog < SWEEP_BATCH
    # Bounded: a deep backlog is dispatched a batch per run, not all at once into the broker.
    for _ in range(10):
        async with runtime.session_factory() as session:
            ids = await find_undispatched(
                session, redispatch_after=runtime.queue_policy.redispatch_after,
                limit=SWEEP_BATCH, resend_stale=resend_stale,
            )
            await mark_dispatched(session, ids)
            await session.commit()
        await runtime.dispatcher.dispatch(ids)
        dispatched += len(ids)
        if len(ids) < SWEEP_BATCH:
            break
    return {"dispatched": dispatched, "broker_backlog": backlog}
