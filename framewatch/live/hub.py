"""This process's WebSocket clients: their subscriptions, bounded buffers and counters.

`Hub.deliver` is called for every live message; it filters the message for each client
(server-side: cameras, detection types, confidence, persons, events). A client with nothing
waiting gets what is left written to its socket at once, when the server can (framewatch's
uvicorn protocol, `framewatch.live.uvicorn_ws`); otherwise it goes into the client's own bounded
buffer, which the connection's send loop drains. A client whose buffer is full is marked to be
disconnected — it never makes delivery to the others wait. Each distinct view of a message is
encoded once, as text and as a frame, and shared: with 1,000 clients, encoding per client was a
seventh of the server's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode

from framewatch.live.bus import LiveMessage

SLOW_CLIENT_CLOSE_CODE = 4008
# The ASGI extension through which a server writes a frame straight to a client's socket
# (framewatch/live/uvicorn_ws.py).
PREPARED_FRAMES = "framewatch.websocket.prepared_frames"


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame (what a server sends) carrying `text`."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    camera_ids: frozenset[str] | None = None
    detection_types: frozenset[str] | None = None
    min_confidence: float = 0.0
    person_ids: frozenset[int] | None = None
    detections: bool = True
    events: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "camera_ids": sorted(self.camera_ids) if self.camera_ids is not None else None,
            "detection_types": (sorted(self.detection_types)
                                if self.detection_types is not None else None),
            "min_confidence": self.min_confidence,
            "person_ids": sorted(self.person_ids) if self.person_ids is not None else None,
            "detections": self.detections,
            "events": self.events,
        }

    @property
    def unfiltered(self) -> bool:
        """Every detection of a matching camera's frames, even a frame with none."""
        return (self.detection_types is None and self.min_confidence <= 0
                and self.person_ids is None)

    def wants_frame(self, message: LiveMessage) -> bool:
        return (self.detections and message.type == "detection"
                and (self.camera_ids is None or message.camera_id in self.camera_ids))

    def wants_event(self, message: LiveMessage) -> bool:
        if not self.events or message.type != "event":
            return False
        if self.camera_ids is not None and message.camera_id not in self.camera_ids:
            return False
        event = message.body.get("event", {})
        if self.person_ids is not None:
            return event.get("person_id") in self.person_ids
        if self.detection_types is not None:
            types = set(event.get("detection_types") or ())
            return bool(types & self.detection_types)
        return True

    def wants(self, detection: dict[str, Any]) -> bool:
        if self.detection_types is not None and detection.get("type") not in self.detection_types:
            return False
        if detection.get("confidence", 0.0) < self.min_confidence:
            return False
        return self.person_ids is None or detection.get("person_id") in self.person_ids


class Offered(enum.Enum):
    """What `Client.offer` did with a message."""

    WRITTEN = "written"  # to the socket, at once
    QUEUED = "queued"  # for the connection's send loop (or held during a replay)
    NOT_WANTED = "not wanted"
    FULL = "full"  # the buffer is full: the client is to be disconnected


@dataclass(eq=False)
class Client:
    """One WebSocket connection's state; the endpoint drains `outbox` into the socket."""

    principal: str
    buffer: int
    camera_scope: frozenset[str] | None = None
    may_read_events: bool = True
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    outbox: asyncio.Queue[str] = field(init=False)
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the server shuts down: the endpoint closes the connection with a reason.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0
    # Writes an encoded frame to the socket now, or says it can't (False); None when the
    # server offers no such thing. Used only while nothing waits in `outbox` and the send
    # loop is not between taking a message and writing it (`sending`), so order is kept.
    write_frame: Callable[[bytes], bool] | None = None
    sending: bool = False
    # While a replay is being sent, live messages wait here (then only newer ones go out);
    # no more than `buffer` of them, like the outbox.
    held: list[LiveMessage] | None = None
    replayed_up_to: int = 0  # the newest id a replay sent: not to be sent again

    def __post_init__(self) -> None:
        self.outbox = asyncio.Queue(maxsize=self.buffer)

    def offer(self, message: LiveMessage, rendering: Rendering | None = None) -> Offered:
        """Write or queue the message (filtered) if a subscription wants it. `rendering`: the
        encodings of this message other clients were given, to share."""
        if self.held is not None:
            if len(self.held) >= self.buffer:
                self.overflowed.set()
                return Offered.FULL
            self.held.append(message)
            return Offered.QUEUED
        if message.id <= self.replayed_up_to:
            return Offered.NOT_WANTED
        kept = self.view(message)
        if kept is None:
            return Offered.NOT_WANTED
        if rendering is None:
            rendering = Rendering(message)
        if (self.write_frame is not None and not self.sending and self.outbox.empty()
                and self.write_frame(rendering.frame(kept))):
            self.sent += 1
            return Offered.WRITTEN
        try:
            self.outbox.put_nowait(rendering.text(kept))
        except asyncio.QueueFull:
            self.overflowed.set()
            return Offered.FULL
        return Offered.QUEUED

    def render(self, message: LiveMessage, rendering: Rendering | None = None) -> str | None:
        """This client's view of the message as text; None when it wants none of it."""
        kept = self.view(message)
        if kept is None:
            return None
        return (rendering or Rendering(message)).text(kept)

    def view(self, message: LiveMessage) -> tuple[int, ...] | None:
        """Which part of the message this client gets (see `kept_detections`; an event is
        all or nothing), None when it wants none of it."""
        if self.camera_scope is not None and message.camera_id not in self.camera_scope:
            return None
        if message.type == "event":
            if any(s.wants_event(message) for s in self.subscriptions.values()):
                return EVERY_DETECTION
            return None
        return self.kept_detections(message)

    def kept_detections(self, message: LiveMessage) -> tuple[int, ...] | None:
        """Which of a detection message's detections this client gets — the union of its
        subscriptions', in the message's order, as positions (EVERY_DETECTION: all of them) —
        or None when no subscription wants the frame."""
        detections: list[dict[str, Any]] = message.body.get("detections", [])
        kept: set[int] = set()
        matched = False
        for subscription in self.subscriptions.values():
            if not subscription.wants_frame(message):
                continue
            if subscription.unfiltered:
                return EVERY_DETECTION
            wanted = [i for i, d in enumerate(detections) if subscription.wants(d)]
            if wanted:  # a filtered subscription wants no frame in which it keeps nothing
                matched = True
                kept.update(wanted)
        if not matched:
            return None
        return EVERY_DETECTION if len(kept) == len(detections) else tuple(sorted(kept))


# The whole message: what unfiltered subscriptions, and events, get. (A filtered selection is
# never empty: a subscription that keeps none of a frame's detections does not want the frame.)
EVERY_DETECTION: tuple[int, ...] = ()


class Rendering:
    """One live message's texts and frames, each encoded once, however many clients it goes
    to: clients whose filters keep the same detections share the same `str` and `bytes` (1,000
    unfiltered dashboards cost one `json.dumps`, not 1,000)."""

    __slots__ = ("_frames", "_message", "_texts")

    def __init__(self, message: LiveMessage) -> None:
        self._message = message
        self._texts: dict[tuple[int, ...], str] = {}
        self._frames: dict[tuple[int, ...], bytes] = {}

    def frame(self, kept: tuple[int, ...]) -> bytes:
        """`text(kept)` as a WebSocket text frame, ready for the socket."""
        frame = self._frames.get(kept)
        if frame is None:
            frame = self._frames[kept] = text_frame(self.text(kept))
        return frame

    def text(self, kept: tuple[int, ...]) -> str:
        """The message with only the detections at positions `kept` (EVERY_DETECTION: the
        message as it is)."""
        text = self._texts.get(kept)
        if text is None:
            body = self._message.as_dict()
            if kept != EVERY_DETECTION:
                detections = body["detections"]
                body["detections"] = [detections[i] for i in kept]
            text = self._texts[kept] = json.dumps(body, default=str)
        return text


class Hub:
    """Every client of this process; counts what it delivered and whom it dropped."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.messages_sent = 0
        self.messages_dropped = 0
        self.clients_dropped = 0
        self._ids = itertools.count(1)
        self._emptied = asyncio.Event()

    def add(self, client: Client) -> None:
        self.clients.add(client)
        self._emptied.clear()

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._emptied.set()

    async def close_all(self, within: float) -> int:
        """Ask every connection to close (the server is shutting down) and wait, at most
        `within` seconds, until they have; returns how many were open."""
        open_clients = len(self.clients)
        for client in list(self.clients):
            client.stopping.set()
        if self.clients:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), within)
        return open_clients

    def next_subscription_id(self) -> str:
        return f"s{next(self._ids)}"

    def deliver(self, message: LiveMessage) -> None:
        rendering = Rendering(message)
        for client in list(self.clients):
            if client.overflowed.is_set():
                self.messages_dropped += 1
                continue
            offered = client.offer(message, rendering)
            if offered is Offered.WRITTEN:
                self.messages_sent += 1
            elif offered is Offered.FULL:
                self.messages_dropped += 1
                self.clients_dropped += 1

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.clients),
            "subscriptions": sum(len(c.subscriptions) for c in self.clients),
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "clients_dropped": self.clients_dropped,
        }
