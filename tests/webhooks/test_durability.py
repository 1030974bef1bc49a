"""Deliveries are rows leased from the database, on SQLite and PostgreSQL: they outlive the
process that made them, a crashed worker's lease runs out and the delivery is taken up again,
a stopped run hands back what it held, and concurrent claims never take a delivery twice."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from framewatch.app import create_app
from framewatch.models import WebhookDelivery
from framewatch.webhooks.deliveries import claim_due
from framewatch.webhooks.runner import deliver_webhooks
from tests.api_fixtures import make_settings
from tests.support.servers import free_port, serve_app
from tests.webhooks.support import (
    FAST,
    create_webhook,
    deliveries,
    receiving,
    send,
    until,
    webhook_api,
)

# The delivery job never runs by itself: the tests run it.
MANUAL = {"webhook_poll_seconds": 60}


async def test_pending_deliveries_survive_a_restart(
    tmp_path: Path, any_database_url: str
) -> None:
    port = free_port()  # the receiver is down while the first process runs
    async with webhook_api(tmp_path, any_database_url, webhook_max_attempts=50) as first:
        hook = await create_webhook(first, f"http://127.0.0.1:{port}/hook")
        frame_ids = [(await send(first, "gate", index))["frame_id"] for index in range(3)]

        async def failed_once() -> list[dict[str, Any]] | None:
            rows = await deliveries(first, hook["id"])
            return rows if len(rows) == 3 and all(
                r["status"] == "pending" and r["attempts"] >= 1 for r in rows) else None

        await until(failed_once, 30, "every delivery tried once")
    # A new process on the same database (and data directory: the same secret key).
    app = create_app(make_settings(tmp_path, any_database_url, **FAST))
    with receiving(port=port) as (receiver, _):
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime

            async def all_delivered() -> list[WebhookDelivery] | None:
                async with runtime.session_factory() as session:
                    rows = list(await session.scalars(select(WebhookDelivery)))
                return rows if rows and {r.status for r in rows} == {"delivered"} else None

            rows = await until(all_delivered, 30, "the deliveries sent by the new process")
    assert len(rows) == 3
    assert sorted(h.json["data"]["frame_id"] for h in receiver.hits) == sorted(frame_ids)
    assert sorted(int(h.headers["x-framewatch-delivery"]) for h in receiver.hits) == sorted(
        row.id for row in rows)


async def test_a_crashed_workers_delivery_is_taken_up_when_its_lease_runs_out(
    tmp_path: Path, any_database_url: str
) -> None:
    with receiving() as (receiver, url):
        async with webhook_api(tmp_path, any_database_url, **MANUAL) as api:
            hook = await create_webhook(api, url)
            await send(api, "gate", 1)
            runtime = api.runtime
            async with runtime.session_factory() as session:
                (taken,) = await claim_due(session, "crashed@elsewhere:1",
                                           timedelta(seconds=1), 10)
                await session.commit()
            # Its lease still runs: nobody else may send it.
            assert set(await deliver_webhooks(runtime)) <= {"deleted"}

            async def delivered() -> dict[str, Any] | None:
                report = await deliver_webhooks(runtime)
                return report if report.get("delivered") else None

            assert await until(delivered, 30, "the orphaned delivery sent") == {"delivered": 1}
            (row,) = await deliveries(api, hook["id"])
    assert row["id"] == taken.id and row["status"] == "delivered"
    # The crashed attempt counts (it may have reached the receiver) but left no outcome.
    assert row["attempts"] == 2 and [a["status_code"] for a in row["attempt_log"]] == [200]
    assert len(receiver.hits) == 1


async def test_concurrent_claims_never_take_a_delivery_twice(
    tmp_path: Path, any_database_url: str
) -> None:
    with receiving() as (_, url):
        async with webhook_api(tmp_path, any_database_url, **MANUAL) as api:
            for _ in range(4):
                await create_webhook(api, url, camera_ids=["gate"])
            for index in range(3):
                await send(api, "gate", index)  # 4 webhooks × 3 frames = 12 deliveries

            async def claim(worker: str) -> list[int]:
                async with api.runtime.session_factory() as session:
                    taken = await claim_due(session, worker, timedelta(minutes=5), 7)
                    await session.commit()
                return [row.id for row in taken]

            first, second = await asyncio.gather(claim("one"), claim("two"))
            async with api.runtime.session_factory() as session:
                rows = list(await session.scalars(select(WebhookDelivery)))
    assert len(rows) == 12 and not set(first) & set(second)
    assert sorted(first + second) == sorted(r.id for r in rows if r.status == "processing")
    assert len(first) + len(second) == 12 and {len(first), len(second)} <= {5, 6, 7}
    owners = {r.id: r.lease_owner for r in rows}
    assert {owners[i] for i in first} <= {"one"} and {owners[i] for i in second} <= {"two"}


async def test_a_stopped_run_hands_its_deliveries_back_at_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    arrived = threading.Event()
    release = threading.Event()

    async def stuck(request: Request) -> JSONResponse:
        await request.body()
        arrived.set()
        await asyncio.to_thread(release.wait, 60)  # answers only when the test is over
        return JSONResponse({"ok": True})

    receiver = Starlette(routes=[Route("/hook", stuck, methods=["POST"])])
    with serve_app(receiver) as base:
        try:
            async with webhook_api(tmp_path, sqlite_url, **MANUAL) as api:
                hook = await create_webhook(api, f"{base}/hook")
                await send(api, "gate", 1)
                run = asyncio.create_task(deliver_webhooks(api.runtime))
                await until(lambda: asyncio.to_thread(arrived.wait, 0.1), 30, "the POST")
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
                (row,) = await deliveries(api, hook["id"])
        finally:
            release.set()
    # Back to pending, due now, the cut-short attempt not counted: the next run sends it.
    assert (row["status"], row["attempts"], row["attempt_log"]) == ("pending", 0, [])
