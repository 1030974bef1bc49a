"""One POST of a delivery to its receiver, checked against the address policy first.

Outcomes: 2xx delivered; 408, 429, 5xx, timeouts and connection errors are retried; any other
status (other 4xx, redirects — never followed) and a forbidden address are not: retrying cannot
help until someone changes the receiver or the subscription.
"""

from __future__ import annotations

import time

import httpx

from framewatch import __version__
from framewatch.core.database import utcnow
from framewatch.providers.urls import (
    ForbiddenProviderAddress,
    ProviderAddressPolicy,
    pinned_transport,
)
from framewatch.webhooks.deliveries import Attempt
from framewatch.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign

RETRYABLE_STATUSES = frozenset({408, 429})
RESPONSE_SNIPPET = 200


def create_client(policy: ProviderAddressPolicy) -> httpx.AsyncClient:
    """The client every delivery goes out through: no redirects, no proxies from the
    environment (the address policy must see the real destination), and connections only to
    addresses the policy allows."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False,
                             transport=pinned_transport(policy, httpx.Limits(max_connections=50)),
                             headers={"User-Agent": f"framewatch-webhooks/{__version__}"})


async def post_delivery(
    client: httpx.AsyncClient, policy: ProviderAddressPolicy, *, url: str, secret: str,
    delivery_id: int, event_type: str, body: str, timeout_seconds: float,
) -> Attempt:
    started_at = utcnow()
    try:
        await policy.check_before_call(url)
    except ForbiddenProviderAddress as exc:
        return Attempt(started_at, None, f"refused by the address policy: {exc}", None, False)
    data = body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, data, int(time.time())),
        DELIVERY_HEADER: str(delivery_id),
        EVENT_HEADER: event_type,
    }
    started = time.monotonic()
    try:
        async with client.stream("POST", url, content=data, headers=headers,
                                 timeout=httpx.Timeout(timeout_seconds)) as response:
            snippet = await _snippet(response)
    except httpx.TimeoutException as exc:
        error = f"timed out after {timeout_seconds:g} s ({type(exc).__name__})"
        return Attempt(started_at, None, error, _ms(started), True)
    except httpx.HTTPError as exc:  # refused, reset, DNS failure, protocol error
        return Attempt(started_at, None, f"{type(exc).__name__}: {exc}"[:500] or "no answer",
                       _ms(started), True)
    elapsed, status = _ms(started), response.status_code
    if 200 <= status < 300:
        return Attempt(started_at, status, None, elapsed, True)
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    error = f"HTTP {status}{note}" + (f": {snippet}" if snippet else "")
    return Attempt(started_at, status, error, elapsed, retryable)


async def _snippet(response: httpx.Response) -> str:
    """The start of the answer (for the delivery's last error), read no further."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_SNIPPET:
            break
    text = b"".join(chunks)[:RESPONSE_SNIPPET].decode("utf-8", "replace")
    return " ".join(text.split())


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
