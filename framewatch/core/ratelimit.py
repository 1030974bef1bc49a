"""Rate limits per API key and per client address, on every HTTP endpoint.

Token buckets: a bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a
second; a request takes one token from its key's bucket and one from its address's bucket, and is
refused with 429 and `Retry-After` when either is empty. `send-frame` has a bucket of its own per
key, so a busy camera agent cannot starve the rest of the API (and the other way round).

With Redis configured, buckets live in Redis (one Lua script, using Redis's clock), so limits hold
across API instances; otherwise they live in memory. If Redis is unreachable the limiter lets
requests through (logged and counted): an outage must not turn into a denial of service.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs

import redis.asyncio as redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from framewatch.core.http_errors import error_response

log = logging.getLogger(__name__)

SEND_FRAME_PATH = "/api/v1/detections/send-frame"
# Set in the scope by a fast path that has already taken this request's tokens (the wait it
# got): the middleware answers with it instead of taking them a second time.
TAKEN = "framewatch.rate_limit_wait"


@dataclass(frozen=True, slots=True)
class Limit:
    per_minute: int
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class Buckets(Protocol):
    async def take(self, requests: list[tuple[str, Limit]]) -> float:
        """Take a token from each bucket; 0 when all allowed, else the longest wait (seconds)."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys = max_keys

    async def take(self, requests: list[tuple[str, Limit]]) -> float:
        return max((self._take(key, limit) for key, limit in requests), default=0.0)

    def _take(self, key: str, limit: Limit) -> float:
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / limit.per_second
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)  # the least recently seen: a full bucket by now
        return wait

    async def close(self) -> None:
        self._buckets.clear()


# Takes the tokens of a batch of requests in one round trip, timed by Redis's clock so that every
# API instance agrees. Requests with the same buckets (one key's, from one address) come as a
# group: KEYS: each group's buckets, one group after the other; ARGV[1]: how many groups; then
# for each group how many buckets it has and how many requests; then the rate per second and
# the burst of each bucket, in turn. Each request takes one token from each of its buckets if it
# has one. Returns each request's longest wait in microseconds (0: allowed), group by group.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local groups = tonumber(ARGV[1])
local waits = {}
local k, a = 1, 2 * groups + 2
for g = 1, groups do
  local buckets, requests = tonumber(ARGV[2 * g]), tonumber(ARGV[2 * g + 1])
  local tokens, rates, bursts = {}, {}, {}
  for b = 1, buckets do
    local rate, burst = tonumber(ARGV[a + 2 * (b - 1)]), tonumber(ARGV[a + 2 * (b - 1) + 1])
    local state = redis.call('HMGET', KEYS[k + b - 1], 'tokens', 'at')
    local held, at = tonumber(state[1]) or burst, tonumber(state[2]) or t
    tokens[b], rates[b], bursts[b] = math.min(burst, held + (t - at) * rate), rate, burst
  end
  for _ = 1, requests do
    local longest = 0
    for b = 1, buckets do
      if tokens[b] >= 1 then
        tokens[b] = tokens[b] - 1
      else
        local wait = (1 - tokens[b]) / rates[b]
        if wait > longest then longest = wait end
      end
    end
    waits[#waits + 1] = math.floor(longest * 1000000)
  end
  for b = 1, buckets do
    redis.call('HSET', KEYS[k + b - 1], 'tokens', tokens[b], 'at', t)
    redis.call('EXPIRE', KEYS[k + b - 1], math.ceil(bursts[b] / rates[b]) + 1)
  end
  k, a = k + buckets, a + 2 * buckets
end
return waits
"""
MAX_BATCH = 256  # requests per round trip


class RedisBuckets:
    """Buckets in Redis. The requests that ask for tokens in the same turn of the event loop
    share one round trip (a batch, taken in arrival order by one script), so a busy API
    instance makes about one call per turn instead of one per request; limits stay exact
    across instances."""

    def __init__(self, url: str, prefix: str = "framewatch:rate") -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._client.register_script(_TAKE)
        self._prefix = prefix
        self._pending: list[tuple[list[tuple[str, Limit]], asyncio.Future[float]]] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._sending_on: asyncio.AbstractEventLoop | None = None  # a send is scheduled there
        self.errors = 0  # requests let through because Redis failed
        self.round_trips = 0

    async def take(self, requests: list[tuple[str, Limit]]) -> float:
        if not requests:
            return 0.0
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[float] = loop.create_future()
        self._pending.append((requests, answer))
        if self._sending_on is not loop:  # once per turn: the batch goes after the turn
            self._sending_on = loop
            loop.call_soon(self._send_pending)
        return await answer

    def _send_pending(self) -> None:
        self._sending_on = None
        loop = asyncio.get_running_loop()
        # Requests that went away are left out (so are any of a loop that has stopped).
        self._pending = [(requests, answer) for requests, answer in self._pending
                         if not answer.done() and answer.get_loop() is loop]
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = loop.create_task(self._take_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _take_batch(
        self, batch: list[tuple[list[tuple[str, Limit]], asyncio.Future[float]]]
    ) -> None:
        # Requests with the same buckets (pollers sharing a key and an address) are sent once,
        # with their number: the script takes their tokens one request after the other.
        groups: dict[tuple[tuple[str, Limit], ...], list[asyncio.Future[float]]] = {}
        for requests, answer in batch:
            groups.setdefault(tuple(requests), []).append(answer)
        keys: list[str] = []
        counts: list[int] = []
        limits: list[float] = []
        for buckets, answers in groups.items():
            counts += [len(buckets), len(answers)]
            for key, limit in buckets:
                keys.append(f"{self._prefix}:{key}")
                limits += [limit.per_second, limit.burst]
        answers = [answer for group in groups.values() for answer in group]
        self.round_trips += 1
        try:
            waits = [int(micros) / 1_000_000 for micros in
                     await self._script(keys=keys, args=[len(groups), *counts, *limits])]
        except RedisError as exc:
            self.errors += len(batch)
            log.warning("rate limiter unavailable (Redis: %s); request let through (%d)",
                        exc, len(batch))
            waits = [0.0] * len(answers)
        except BaseException:
            for answer in answers:
                answer.cancel()
            raise
        for answer, wait in zip(answers, waits, strict=True):
            if not answer.done():  # its request may have gone away
                answer.set_result(wait)

    async def close(self) -> None:
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_key: Limit | None = None
    per_address: Limit | None = None
    send_frame: Limit | None = None
    auth_failures: Limit | None = None


def key_identity(authorization: str | None) -> str | None:
    """A bucket name for the bearer key: a digest, never the key itself."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:24] if token else None


class RateLimitMiddleware:
    """ASGI middleware applying the runtime's limits to every HTTP request and WebSocket
    handshake. The buckets belong to the runtime (made and closed in the app's lifespan)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
        if scope["type"] not in ("http", "websocket") or runtime is None:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = runtime.rate_limiter
        wait = scope[TAKEN] if TAKEN in scope else await limiter.check(scope)
        if wait > 0:
            limiter.refused += 1
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4029, "reason": "rate limited"})
                return
            retry = max(1, math.ceil(wait))
            response = error_response(
                429, "rate_limited", f"too many requests; retry in {retry} s",
                {"retry_after_seconds": retry},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RateLimiter:
    """The limits and their buckets; `check` takes the tokens a request costs."""

    def __init__(self, limits: RateLimits, buckets: Buckets) -> None:
        self.limits = limits
        self.buckets = buckets
        self.refused = 0

    async def check(self, scope: Scope) -> float:
        """0 when the request may go ahead; else the seconds to wait."""
        authorization = next((value for name, value in scope.get("headers") or ()
                              if name == b"authorization"), b"")
        key = key_identity(authorization.decode("latin-1") or None)
        if key is None and scope["type"] == "websocket":
            key = key_identity(_query_token(scope))
        address = (scope.get("client") or ("unknown", 0))[0]
        checks = [(f"addr:{address}", self.limits.per_address)]
        if key is not None:
            checks.append((f"key:{key}", self.limits.per_key))
            if scope.get("path") == SEND_FRAME_PATH:
                checks.append((f"frames:{key}", self.limits.send_frame))
        return await self.buckets.take([(name, lim) for name, lim in checks if lim is not None])

    async def failed_authentication(self, address: str) -> float:
        """Count a failed authentication from `address`; the wait once its budget of
        `FRAMEWATCH_RATE_LIMIT_AUTH_FAILURES_PER_MINUTE` is spent. The budget refills at that
        rate and may be spent at once (the burst setting shapes request rates, not this)."""
        failures = self.limits.auth_failures
        if failures is None:
            return 0.0
        per_minute = Limit(failures.per_minute, burst=failures.per_minute)
        return await self.buckets.take([(f"authfail:{address}", per_minute)])

    async def close(self) -> None:
        await self.buckets.close()


def limit(per_minute: int, burst_seconds: float) -> Limit | None:
    """A limit of `per_minute` with a burst of `burst_seconds` worth; None when 0 (off)."""
    if per_minute <= 0:
        return None
    return Limit(per_minute, max(1, math.ceil(per_minute / 60 * burst_seconds)))


def create_rate_limiter(
    redis_url: str | None, limits: RateLimits
) -> RateLimiter:
    buckets: Buckets = RedisBuckets(redis_url) if redis_url else MemoryBuckets()
    return RateLimiter(limits, buckets)


def _query_token(scope: Scope) -> str | None:
    values = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get("token")
    return f"Bearer {values[0]}" if values else None
