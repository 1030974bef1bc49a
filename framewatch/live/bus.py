"""Live messages — processed frames with their detections, and events — to every process.

Two logs behind one interface:
- `MemoryLog` (one process, the embedded default): ids from a counter that starts from the clock,
  recent messages in a ring.
- `RedisStreamLog` (several API instances and workers sharing Redis): `XADD` to one stream gives
  each message its id and keeps the last `window` of them; every API process reads the stream
  with a blocking `XREAD` and hands what it reads to its own hub. A stream is Redis pub/sub that
  remembers: a process that reconnects after a blip continues from the last id it read, and a
  client that reconnects can be replayed what it missed.

Ids are integers that only grow (`ms << 20 | seq` of the stream id), so clients can compare them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger(__name__)

SEQUENCE_BITS = 20


@dataclass(frozen=True, slots=True)
class LiveMessage:
    id: int
    type: str  # "detection" or "event"
    camera_id: str | None
    body: dict[str, Any] = field(hash=False)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, **self.body}


@dataclass(frozen=True, slots=True)
class Replay:
    messages: list[LiveMessage]
    # False when messages after the client's id were already dropped from the window.
    complete: bool


Deliver = Callable[[LiveMessage], None]
# A message to publish: its type, camera id and body.
Publishable = tuple[str, str | None, dict[str, Any]]


class LiveLog(Protocol):
    name: str
    published: int
    failed: int

    async def start(self, deliver: Deliver) -> None: ...
    async def publish(self, messages: Sequence[Publishable]) -> None: ...
    async def replay(self, after_id: int) -> Replay: ...
    async def last_id(self) -> int: ...
    async def close(self) -> None: ...


def stream_id_to_int(stream_id: str | bytes) -> int:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    millis, _, sequence = text.partition("-")
    return int(millis) << SEQUENCE_BITS | int(sequence or 0)


def int_to_stream_id(value: int) -> str:
    return f"{value >> SEQUENCE_BITS}-{value & ((1 << SEQUENCE_BITS) - 1)}"


class MemoryLog:
    name = "memory"

    def __init__(self, window: int) -> None:
        self._recent: deque[LiveMessage] = deque(maxlen=max(window, 1))
        self._window = window
        # Ids go on from the clock, as a Redis stream's do (ms << 20): they keep growing across
        # a restart, and an id from before it asks for messages this log never had (resync).
        self._next_id = time.time_ns() // 1_000_000 << SEQUENCE_BITS
        self._trimmed_up_to = self._next_id
        self._deliver: Deliver | None = None
        self.published = 0
        self.failed = 0

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, messages: Sequence[Publishable]) -> None:
        for type_, camera_id, body in messages:
            self._next_id += 1
            message = LiveMessage(self._next_id, type_, camera_id, body)
            if self._window:
                if len(self._recent) == self._recent.maxlen:
                    self._trimmed_up_to = self._recent[0].id
                self._recent.append(message)
            else:
                self._trimmed_up_to = message.id
            self.published += 1
            if self._deliver is not None:
                self._deliver(message)

    async def replay(self, after_id: int) -> Replay:
        return Replay([m for m in self._recent if m.id > after_id],
                      complete=self._trimmed_up_to <= after_id)

    async def last_id(self) -> int:
        return self._next_id

    async def close(self) -> None:
        self._deliver = None


class RedisStreamLog:
    name = "redis"
    READ_BLOCK_MS = 1000

    def __init__(self, url: str, window: int, key: str = "framewatch:live",
                 batch: int = 100) -> None:
        self._key = key
        self._window = max(window, 1)
        # Entries read (and delivered) at once: at most half a client's buffer, so that a burst
        # never overflows a client that keeps up in real time.
        self._batch = max(1, batch)
        # Publishing must cost a request milliseconds when Redis is down, never seconds.
        self._writer = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        # The reader blocks in XREAD for up to READ_BLOCK_MS: its socket timeout must be longer.
        self._reader = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=0.5)
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.failed = 0

    async def start(self, deliver: Deliver) -> None:
        self._task = asyncio.create_task(self._read_forever(deliver), name="live-stream-reader")

    async def publish(self, messages: Sequence[Publishable]) -> None:
        """All of them in one round trip (a pipeline, in order): under load each round trip
        also waits for a turn of the event loop, which may be a fan-out to 1,000 clients."""
        pipeline = self._writer.pipeline(transaction=False)
        for type_, camera_id, body in messages:
            fields = {"t": type_, "c": camera_id or "", "b": json.dumps(body, default=str)}
            pipeline.xadd(self._key, fields,  # type: ignore[arg-type]
                          maxlen=self._window, approximate=True)
        try:
            await pipeline.execute()
            self.published += len(messages)
        except RedisError as exc:
            self.failed += len(messages)
            log.warning("%d live messages not published (Redis: %s); clients will resync",
                        len(messages), exc)

    async def replay(self, after_id: int) -> Replay:
        try:
            info = await self._writer.xinfo_stream(self._key)
        except ResponseError:  # no stream: nothing was ever published, or Redis lost it
            return Replay([], complete=after_id == 0)
        entries: Any = await self._writer.xrange(
            self._key, min=f"({int_to_stream_id(after_id)}", max="+", count=self._window
        )
        trimmed = int(info["entries-added"]) - int(info["length"])
        first = info.get("first-entry")
        # Trimming drops the oldest entries, all older than the first one kept. A client that
        # has seen the first kept entry missed nothing; otherwise it may have (conservatively).
        complete = trimmed == 0 or (first is not None and stream_id_to_int(first[0]) <= after_id)
        return Replay([self._message(entry_id, fields) for entry_id, fields in entries], complete)

    async def last_id(self) -> int:
        newest: Any = await self._writer.xrevrange(self._key, count=1)
        return stream_id_to_int(newest[0][0]) if newest else 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._writer.aclose()
        await self._reader.aclose()

    async def _read_forever(self, deliver: Deliver) -> None:
        last: str | None = None
        pause = 0.1
        while True:
            try:
                if last is None:  # start from what is newest now
                    newest: Any = await self._reader.xrevrange(self._key, count=1)
                    last = newest[0][0].decode() if newest else "0-0"
                answer: Any = await self._reader.xread({self._key: last}, count=self._batch,
                                                       block=self.READ_BLOCK_MS)
                pause = 0.1
            except RedisError as exc:
                log.warning("live stream unreadable (Redis: %s); retrying in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id.decode()
                    try:
                        deliver(self._message(entry_id, fields))
                    except Exception:  # one bad message must not stop the stream
                        log.exception("delivering live message %s failed", last)
            # The clients' senders drain between batches, not between messages: each of them
            # then wakes once for a batch instead of once per message (1,000 clients × 20
            # messages a second), which kept a reader that fell behind from catching up.
            await asyncio.sleep(0)

    @staticmethod
    def _message(entry_id: bytes, fields: dict[bytes, bytes]) -> LiveMessage:
        camera = fields.get(b"c", b"").decode() or None
        return LiveMessage(stream_id_to_int(entry_id), fields[b"t"].decode(), camera,
                           json.loads(fields[b"b"]))


def create_log(redis_url: str | None, window: int, client_buffer: int = 256) -> LiveLog:
    """The live log; with Redis, read in batches of at most half of `client_buffer`."""
    if redis_url:
        return RedisStreamLog(redis_url, window, batch=min(100, client_buffer // 2))
    return MemoryLog(window)
