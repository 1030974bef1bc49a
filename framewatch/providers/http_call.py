"""One HTTP call to a remote provider, with the provider's timeouts and bounded retries.

Retried: timeouts, connection errors, 429 and 5xx answers, with exponential backoff and jitter.
Never retried: any other 4xx, which the adapter turns into a `ProviderResponseError`.

Some providers quote the API key they were sent in their errors; every answer has the key masked
here, before anything reads it, so that it never reaches an error, an event, a log or an API
answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from framewatch.core.secrets import mask
from framewatch.providers.base import ProviderResponseError, ProviderSpec, ProviderUnreachable


class _Transient(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    response: httpx.Response
    attempts: int
    latency_ms: float

    def json(self) -> Any:
        """The body as JSON, or a `ProviderResponseError` saying why it is not."""
        try:
            return self.response.json()
        except ValueError as exc:
            snippet = self.response.text[:200]
            raise ProviderResponseError(
                f"answer is not JSON (HTTP {self.response.status_code}): {snippet!r}",
                status_code=self.response.status_code,
                attempts=self.attempts,
            ) from exc


async def send_with_retries(
    client: httpx.AsyncClient, spec: ProviderSpec, method: str, url: str, **request: Any
) -> ProviderResponse:
    """Send one request with the spec's timeouts and retries; 5xx/timeouts raise when exhausted."""
    limits = httpx.Timeout(spec.timeout_seconds, connect=spec.connect_timeout_seconds)
    backoff = max(spec.retry_backoff_seconds, 0.0)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(spec.max_retries + 1),
        wait=wait_exponential_jitter(
            multiplier=backoff, max=max(backoff * 16, 0.001), jitter=backoff
        ),
        retry=retry_if_exception_type(_Transient),
        reraise=True,
    )
    attempts = 0
    started = time.perf_counter()
    try:
        async for attempt in retrying:
            with attempt:
                attempts += 1
                response = await _send_once(client, method, url, limits, request,
                                            spec.api_key)
    except _Transient as exc:
        raise ProviderUnreachable(
            f"{spec.name}: {exc.message} (after {attempts} attempts)",
            status_code=exc.status_code,
            attempts=attempts,
        ) from None
    latency_ms = (time.perf_counter() - started) * 1000
    return ProviderResponse(response=response, attempts=attempts, latency_ms=latency_ms)


async def _send_once(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    limits: httpx.Timeout,
    request: dict[str, Any],
    api_key: str | None,
) -> httpx.Response:
    try:
        response = await client.request(method, url, timeout=limits, **request)
    except httpx.TimeoutException as exc:
        raise _Transient(f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise _Transient(f"connection failed ({type(exc).__name__}: {exc})") from exc
    response = without_key(response, api_key)
    if response.status_code == 429 or response.status_code >= 500:
        raise _Transient(
            f"HTTP {response.status_code}: {response.text[:200]!r}", response.status_code
        )
    return response


def without_key(response: httpx.Response, api_key: str | None) -> httpx.Response:
    """`response` with every copy of `api_key` in its body masked (`••••abcd`). Keys under 8
    characters are left alone, so that a one-letter key cannot mangle the answer."""
    if not api_key or len(api_key) < 8 or api_key.encode() not in response.content:
        return response
    # The body is decoded already: its length and encoding headers no longer apply.
    headers = [(name, value) for name, value in response.headers.multi_items()
               if name.lower() not in ("content-length", "content-encoding")]
    content = response.content.replace(api_key.encode(), mask(api_key).encode())
    return httpx.Response(response.status_code, headers=headers, content=content,
                          request=response.request)
