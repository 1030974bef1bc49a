"""What each camera of the agent is doing, counted: for the log and the status endpoint."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

State = Literal["connecting", "streaming", "reconnecting", "finished", "stopped"]
# fps_in and fps_out are averaged over this many seconds.
RATE_WINDOW_SECONDS = 10.0


class RateMeter:
    """Events per second over the last RATE_WINDOW_SECONDS."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=10_000)
        self._started = time.monotonic()

    def tick(self) -> None:
        self._times.append(time.monotonic())

    def per_second(self) -> float:
        now = time.monotonic()
        while self._times and self._times[0] < now - RATE_WINDOW_SECONDS:
            self._times.popleft()
        span = min(RATE_WINDOW_SECONDS, now - self._started)
        return round(len(self._times) / span, 2) if span > 0 else 0.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass
class CameraStatus:
    """Counters and state of one camera. `grabbed` frames were read from the source; of them
    `skipped` had not changed, the rest went to the buffer, from which `sent` were delivered,
    `rejected` were refused by the API for good and `dropped` were pushed out when the buffer
    was full."""

    camera_id: str
    source: str
    kind: str
    state: State = "connecting"
    connected: bool = False
    api_reachable: bool | None = None
    grabbed: int = 0
    skipped: int = 0
    sent: int = 0
    rejected: int = 0
    rate_limited: int = 0
    reconnects: int = 0
    failed_attempts: int = 0
    retry_in_seconds: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_frame_at: datetime | None = None
    last_sent_at: datetime | None = None
    frames_in: RateMeter = field(default_factory=RateMeter)
    frames_out: RateMeter = field(default_factory=RateMeter)

    def error(self, message: str) -> None:
        self.last_error, self.last_error_at = message, utc_now()

    def source_connected(self) -> None:
        if self.state == "reconnecting":
            self.reconnects += 1
        self.state, self.connected = "streaming", True
        self.failed_attempts, self.retry_in_seconds = 0, None

    def source_failed(self, message: str, retry_in: float) -> None:
        self.error(message)
        self.state, self.connected = "reconnecting", False
        self.failed_attempts += 1
        self.retry_in_seconds = round(retry_in, 3)

    def grabbed_frame(self, changed: bool) -> None:
        self.grabbed += 1
        self.last_frame_at = utc_now()
        self.frames_in.tick()
        if not changed:
            self.skipped += 1

    def delivered(self) -> None:
        self.sent += 1
        self.api_reachable = True
        self.last_sent_at = utc_now()
        self.frames_out.tick()

    def snapshot(self, buffered: int, dropped: int) -> dict[str, Any]:
        """The status as JSON-ready values."""
        return {
            "camera_id": self.camera_id, "source": self.source, "kind": self.kind,
            "state": self.state, "connected": self.connected,
            "api_reachable": self.api_reachable,
            "fps_in": self.frames_in.per_second(), "fps_out": self.frames_out.per_second(),
            "grabbed": self.grabbed, "skipped": self.skipped, "sent": self.sent,
            "buffered": buffered, "dropped": dropped, "rejected": self.rejected,
            "rate_limited": self.rate_limited, "reconnects": self.reconnects,
            "failed_attempts": self.failed_attempts, "retry_in_seconds": self.retry_in_seconds,
            "last_error": self.last_error, "last_error_at": iso(self.last_error_at),
            "last_frame_at": iso(self.last_frame_at), "last_sent_at": iso(self.last_sent_at),
        }


def summary(status: dict[str, Any]) -> str:
    """One log line: `camera gate: streaming, in 2.0 fps, out 0.5 fps, skipped 12, ...`."""
    error = f", last error: {status['last_error']}" if status["last_error"] else ""
    return (f"camera {status['camera_id']}: {status['state']}, in {status['fps_in']:g} fps, "
            f"out {status['fps_out']:g} fps, sent {status['sent']}, skipped "
            f"{status['skipped']}, dropped {status['dropped']}, buffered {status['buffered']}, "
            f"rejected {status['rejected']}{error}")
