"""Sending one frame to `POST /api/v1/detections/send-frame`, and what to do with the answer."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from framewatch.agent.frames import OutgoingFrame
from framewatch.agent.sources import describe_http_error

SEND_FRAME_PATH = "/api/v1/detections/send-frame"
# Sync mode waits for the provider, which may retry for a while: a long read timeout.
UPLOAD_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# The key, camera scope or camera is wrong: nothing will get through until someone fixes it,
# so keep sending (to notice the fix) but back off as for an unreachable API.
CONFIGURATION_ERRORS = frozenset({401, 403, 404, 409})


@dataclass(frozen=True, slots=True)
class Delivery:
    """What came of one attempt.

    `sent`: the API has the frame. `rejected`: it refused this frame for good (it is not tried
    again); `back_off` says whether to pause before the next one. `retry`: the API could not
    take it now (unreachable, overloaded, rate limited); try it again after `wait` seconds, or
    after the back-off when `wait` is None.
    """

    outcome: Literal["sent", "rejected", "retry"]
    error: str | None = None
    wait: float | None = None
    back_off: bool = False
    reachable: bool = True
    rate_limited: bool = False


class FrameUploader:
    """Posts frames of any camera with one API key."""

    def __init__(self, client: httpx.AsyncClient, api_url: str, key: str, *,
                 mode: str = "sync") -> None:
        self.client = client
        self.url = api_url.rstrip("/") + SEND_FRAME_PATH
        self.headers = {"Authorization": f"Bearer {key}"}
        self.mode = mode

    async def send(self, camera_id: str, frame: OutgoingFrame, mode: str | None = None
                   ) -> Delivery:
        extension = frame.content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        fields = {"camera_id": camera_id, "captured_at": frame.captured_at.isoformat(),
                  "mode": mode or self.mode}
        try:
            response = await self.client.post(
                self.url, headers=self.headers, data=fields, timeout=UPLOAD_TIMEOUT,
                files={"image": (f"frame.{extension}", frame.data, frame.content_type)},
            )
        except httpx.HTTPError as exc:
            return Delivery("retry", f"cannot reach the API at {self.url}: "
                            f"{describe_http_error(exc)}", reachable=False)
        return judge(response)


def judge(response: httpx.Response) -> Delivery:
    """The Delivery an answer of send-frame means."""
    status = response.status_code
    if status in (200, 201, 202):
        return Delivery("sent")
    body = _json(response)
    error = f"HTTP {status} {body.get('error', '')}: {body.get('detail', response.text[:200])}"
    if status == 503 and body.get("queued") is True:
        return Delivery("sent")  # stored and queued: the API runs the provider later
    if status == 429:
        return Delivery("retry", error, wait=retry_after(response), rate_limited=True)
    if status in CONFIGURATION_ERRORS:
        return Delivery("rejected", error, back_off=True)
    if status == 502 and body.get("error") == "provider_error":
        # The provider refused this frame; the API stored it and dead-lettered it.
        return Delivery("rejected", error)
    if status == 408 or status >= 500:
        # framewatch's own errors have a JSON body; a bare 5xx is a proxy whose backend is down.
        return Delivery("retry", error, reachable="error" in body)
    # 400, 413, 415, 422: this frame is not acceptable; sending it again cannot help.
    return Delivery("rejected", error)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
