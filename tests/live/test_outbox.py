"""The outbox's publishing task: what was committed while it was busy goes out together, in
commit order, and `drain` waits for all of it."""

from __future__ import annotations

import asyncio

from framewatch.live.outbox import Outbox, Outgoing


def message(number: int) -> Outgoing:
    return Outgoing("detection", "gate", {"frame_id": number})


async def test_what_was_committed_meanwhile_is_published_in_one_batch() -> None:
    batches: list[list[int]] = []
    busy = asyncio.Event()

    async def publish(messages: list[Outgoing]) -> None:
        batches.append([m.body["frame_id"] for m in messages])
        await busy.wait()  # a slow publish (a Redis round trip behind a fan-out)

    outbox = Outbox(publish)
    outbox.put([message(1)])
    await asyncio.sleep(0)  # the task takes the first commit and is busy with it
    for number in (2, 3, 4):
        outbox.put([message(number), message(number * 10)])
    busy.set()
    await asyncio.wait_for(outbox.drain(), 30)
    assert batches == [[1], [2, 20, 3, 30, 4, 40]]
    await outbox.close()


async def test_a_failed_publish_is_logged_and_the_next_commits_still_go_out() -> None:
    published: list[int] = []

    async def publish(messages: list[Outgoing]) -> None:
        if messages[0].body["frame_id"] == 1:
            raise RuntimeError("Redis went away")
        published.extend(m.body["frame_id"] for m in messages)

    outbox = Outbox(publish)
    outbox.put([message(1)])
    await asyncio.wait_for(outbox.drain(), 30)
    outbox.put([message(2)])
    await asyncio.wait_for(outbox.drain(), 30)
    assert published == [2]
    await outbox.close()
