"""Failing receivers, in-process worker on SQLite (and PostgreSQL for the dead letter): retries
with backoff until the receiver answers, nothing lost while it is down, nothing doubled once it
is back; dead letters after the last attempt or at once for a refusal; redelivery."""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from framewatch.webhooks.signing import verify
from tests.support.servers import free_port
from tests.webhooks.support import (
    Receiver,
    create_webhook,
    deliveries,
    events_of,
    receiving,
    send,
    settled,
    until,
    webhook_api,
)


async def test_a_500_is_retried_with_backoff_until_it_is_delivered_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    with receiving(Receiver(script=deque([500, 503]))) as (receiver, url):
        async with webhook_api(tmp_path, sqlite_url) as api:
            hook = await create_webhook(api, url)
            frame_id = (await send(api, "gate", 1))["frame_id"]
            (row,) = await settled(api, hook["id"], 1)

    assert row["status"] == "delivered" and row["attempts"] == 3
    assert [a["status_code"] for a in row["attempt_log"]] == [500, 503, 200]
    assert row["attempt_log"][0]["error"] == 'HTTP 500: {"error":"receiver says no"}'
    assert row["last_error"] is None and row["last_status_code"] == 200
    # The same body, signed anew, three times; one delivery id; waits of ≥ 0.1 s, then ≥ 0.2 s
    # (base 0.2 s doubling, capped at 0.4 s, times a jitter factor of 0.5–1).
    assert len({hit.body for hit in receiver.hits}) == 1
    assert {hit.headers["x-framewatch-delivery"] for hit in receiver.hits} == {str(row["id"])}
    assert all(verify(hook["secret"], hit.body, hit.headers["x-framewatch-signature"])
               for hit in receiver.hits)
    assert receiver.hits[0].json["data"]["frame_id"] == frame_id
    times = [datetime.fromisoformat(a["at"]) for a in row["attempt_log"]]
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps
    hit_gaps = [b.at - a.at for a, b in pairwise(receiver.hits)]
    assert hit_gaps[0] >= 0.1 and hit_gaps[1] >= 0.2, hit_gaps


async def test_a_receiver_that_is_down_gets_everything_once_when_it_comes_back(
    tmp_path: Path, sqlite_url: str
) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    async with webhook_api(tmp_path, sqlite_url, webhook_max_attempts=50) as api:
        hook = await create_webhook(api, f"http://127.0.0.1:{port}/hook")
        frame_ids = [(await send(api, "gate", index))["frame_id"] for index in range(5)]

        async def all_retried() -> list[dict[str, object]] | None:
            rows = await deliveries(api, hook["id"])
            return rows if len(rows) == 5 and all(
                r["status"] == "pending" and int(r["attempts"]) >= 2  # type: ignore[call-overload]
                for r in rows) else None

        waiting = await until(all_retried, 15, "every delivery failed twice")
        assert all("ConnectError" in str(row["last_error"]) for row in waiting)
        assert all(row["last_status_code"] is None for row in waiting)
        with receiving(port=port) as (receiver, _):
            rows = await settled(api, hook["id"], 5)
    assert {row["status"] for row in rows} == {"delivered"}
    sent_ids = Counter(hit.headers["x-framewatch-delivery"] for hit in receiver.hits)
    assert sent_ids == Counter({str(row["id"]): 1 for row in rows})
    assert sorted(hit.json["data"]["frame_id"] for hit in receiver.hits) == sorted(frame_ids)
    for row in rows:
        log = row["attempt_log"]
        assert row["attempts"] == len(log) >= 3
        assert all(a["status_code"] is None for a in log[:-1]) and log[-1]["status_code"] == 200


async def test_dead_letter_after_the_last_attempt_then_redeliver(
    tmp_path: Path, any_database_url: str
) -> None:
    with receiving(Receiver(status=500)) as (failing, failing_url), \
            receiving() as (_, watcher_url):
        async with webhook_api(tmp_path, any_database_url, webhook_max_attempts=3) as api:
            # It would hear of dead letters too — but not of its own.
            hook = await create_webhook(api, failing_url,
                                        event_types=["detection", "webhook.dead_letter"])
            watch = await create_webhook(api, watcher_url, event_types=["webhook.dead_letter"])
            await send(api, "gate", 1)
            rows = await until(lambda: dead_rows(api, hook["id"]), 15, "a dead delivery")
            (dead,) = rows
            assert dead["attempts"] == 3 and len(failing.of_type("detection")) == 3
            assert [a["status_code"] for a in dead["attempt_log"]] == [500, 500, 500]
            (event,) = await events_of(api, "webhook.dead_letter")
            assert event.severity == "error"
            assert event.payload == {
                "webhook_id": hook["id"], "delivery_id": dead["id"], "event_type": "detection",
                "attempts": 3, "status_code": 500,
                "error": 'HTTP 500: {"error":"receiver says no"}', "reason": "attempts exhausted"}
            # The watcher hears of it; the dead webhook is not told about its own dead letter.
            (told,) = await settled(api, watch["id"], 1)
            assert told["body"]["data"]["payload"]["delivery_id"] == dead["id"]
            assert [r["id"] for r in await deliveries(api, hook["id"])] == [dead["id"]]

            redeliver = f"/api/v1/webhooks/{hook['id']}/deliveries/{dead['id']}/redeliver"
            failing.status = 200
            response = await api.client.post(redeliver, headers=api.auth("admin"))
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "pending" and response.json()["attempts"] == 0
            again = await until(lambda: row_in(api, hook["id"], dead["id"], "delivered"), 10,
                                "the redelivery")
            twice = await api.client.post(redeliver, headers=api.auth("admin"))
            assert twice.status_code == 200
            # A pending delivery cannot be redelivered.
            conflict = await api.client.post(redeliver, headers=api.auth("admin"))
            assert conflict.status_code == 409 and conflict.json()["delivery_status"] in (
                "pending", "processing", "delivered")
            redelivered = await events_of(api, "webhook.redelivered")
    assert again["attempts"] == 1
    assert [a["status_code"] for a in again["attempt_log"]] == [500, 500, 500, 200]
    ids = [hit.headers["x-framewatch-delivery"] for hit in failing.of_type("detection")]
    assert ids[:4] == [str(dead["id"])] * 4
    assert [e.payload["previous_status"] for e in redelivered] == ["dead", "delivered"]
    assert all(e.actor == "key:admin" or (e.actor or "").startswith("key:") for e in redelivered)


async def dead_rows(api: object, webhook_id: int) -> list[dict[str, object]] | None:
    rows = await deliveries(api, webhook_id)  # type: ignore[arg-type]
    return rows if any(row["status"] == "dead" for row in rows) else None


async def row_in(api: object, webhook_id: int, delivery_id: int,
                 status: str) -> dict[str, object] | None:
    rows = await deliveries(api, webhook_id)  # type: ignore[arg-type]
    found = [row for row in rows if row["id"] == delivery_id and row["status"] == status]
    return found[0] if found else None


async def test_a_4xx_is_not_retried_but_408_and_429_are(tmp_path: Path, sqlite_url: str) -> None:
    with receiving(Receiver(status=400)) as (refusing, refusing_url), \
            receiving(Receiver(script=deque([429, 408]))) as (_, busy_url), \
            receiving(Receiver(status=302)) as (_, moved_url):
        async with webhook_api(tmp_path, sqlite_url) as api:
            refused = await create_webhook(api, refusing_url)
            throttled = await create_webhook(api, busy_url)
            redirected = await create_webhook(api, moved_url)
            await send(api, "gate", 1)
            (no,) = await settled(api, refused["id"], 1)
            (yes,) = await settled(api, throttled["id"], 1)
            (away,) = await settled(api, redirected["id"], 1)
            reasons = {e.payload["webhook_id"]: e.payload["reason"]
                       for e in await events_of(api, "webhook.dead_letter")}
    assert (no["status"], no["attempts"], no["last_status_code"]) == ("dead", 1, 400)
    assert len(refusing.hits) == 1
    assert (yes["status"], yes["attempts"]) == ("delivered", 3)
    assert [a["status_code"] for a in yes["attempt_log"]] == [429, 408, 200]
    assert (away["status"], away["attempts"], away["last_status_code"]) == ("dead", 1, 302)
    assert "redirects are not followed" in away["last_error"]
    assert reasons == {refused["id"]: "not retryable", redirected["id"]: "not retryable"}
