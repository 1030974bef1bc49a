"""The Redis stream reader of each API process delivers what it reads in batches of at most half
a client's buffer: a burst larger than the buffer (a reader that fell behind) reaches a client
that keeps up without overflowing it, in order, and the senders wake once per batch."""

from __future__ import annotations

import asyncio
import json
import uuid

from framewatch.live.bus import RedisStreamLog, create_log
from framewatch.live.hub import Client, Hub, Subscription
from tests.conftest import redis_url_or_skip

BUFFER = 8


async def test_a_burst_larger_than_the_buffer_reaches_a_client_that_keeps_up() -> None:
    url = redis_url_or_skip()
    log = create_log(url, window=1000, client_buffer=BUFFER)
    assert isinstance(log, RedisStreamLog)
    log._key = f"test-live-{uuid.uuid4().hex[:8]}"  # a stream of this test's own
    hub = Hub()
    keeping_up = Client(principal="test", buffer=BUFFER)
    keeping_up.subscriptions["s1"] = Subscription(id="s1")
    hub.add(keeping_up)
    received: list[int] = []
    largest_batch = 0

    async def read_like_a_sender() -> None:  # as the endpoint's send loop does, without a socket
        nonlocal largest_batch
        while True:
            received.append(json.loads(await keeping_up.outbox.get())["frame_id"])
            largest_batch = max(largest_batch, keeping_up.outbox.qsize() + 1)

    sender = asyncio.create_task(read_like_a_sender())
    try:
        await log.start(hub.deliver)
        await asyncio.sleep(0.2)  # the reader is waiting at the end of the stream
        await log.publish([("detection", "gate", {"camera_id": "gate", "frame_id": n,
                                                  "detections": []}) for n in range(50)])
        for _ in range(100):
            if len(received) == 50:
                break
            await asyncio.sleep(0.05)
        assert received == list(range(50))
        assert not keeping_up.overflowed.is_set()
        assert 1 < largest_batch <= BUFFER // 2  # delivered in batches, none over half
    finally:
        sender.cancel()
        await log.close()
