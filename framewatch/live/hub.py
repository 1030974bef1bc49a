"""This process's WebSocket clients: their subscriptions, bounded buffers and counters.

`Hub.deliver` is called for every live message; it filters the message for each client
(server-side: cameras, detection types, confidence, persons, events) and puts what is left in the
client's own bounded buffer. A client whose buffer is full is marked to be disconnected — it
never makes delivery to the others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from framewatch.live.bus import LiveMessage

SLOW_CLIENT_CLOSE_CODE = 4008


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

    def _unfiltered(self) -> bool:
        return (self.detection_types is None and self.min_confidence <= 0
                and self.person_ids is None)

    def matching_detections(self, message: LiveMessage) -> list[dict[str, Any]] | None:
        """The message's detections this subscription wants; None when it wants nothing of it.
        Without detection filters, a frame with no detections still comes (the picture moved)."""
        if not self.detections or message.type != "detection":
            return None
        if self.camera_ids is not None and message.camera_id not in self.camera_ids:
            return None
        detections: list[dict[str, Any]] = message.body.get("detections", [])
        if self._unfiltered():
            return detections
        kept = [d for d in detections if self._wants(d)]
        return kept or None

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

    def _wants(self, detection: dict[str, Any]) -> bool:
        if self.detection_types is not None and detection.get("type") not in self.detection_types:
            return False
        if detection.get("confidence", 0.0) < self.min_confidence:
            return False
        return self.person_ids is None or detection.get("person_id") in self.person_ids


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
    # While a replay is being sent, live messages wait here (then only newer ones go out);
    # no more than `buffer` of them, like the outbox.
    held: list[LiveMessage] | None = None
    replayed_up_to: int = 0  # the newest id a replay sent: not to be sent again

    def __post_init__(self) -> None:
        self.outbox = asyncio.Queue(maxsize=self.buffer)

    def offer(self, message: LiveMessage) -> bool:
        """Queue the message (filtered) if a subscription wants it; False if the buffer is full."""
        if self.held is not None:
            if len(self.held) >= self.buffer:
                self.overflowed.set()
                return False
            self.held.append(message)
            return True
        if message.id <= self.replayed_up_to:
            return True
        text = self.render(message)
        if text is None:
            return True
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed.set()
            return False
        return True

    def render(self, message: LiveMessage) -> str | None:
        if self.camera_scope is not None and message.camera_id not in self.camera_scope:
            return None
        if message.type == "event":
            if any(s.wants_event(message) for s in self.subscriptions.values()):
                return json.dumps(message.as_dict(), default=str)
            return None
        wanted: dict[Any, dict[str, Any]] = {}
        matched = False
        for subscription in self.subscriptions.values():
            detections = subscription.matching_detections(message)
            if detections is not None:
                matched = True
                wanted.update((d.get("id"), d) for d in detections)
        if not matched:
            return None
        body = {**message.as_dict(), "detections": list(wanted.values())}
        return json.dumps(body, default=str)


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
        for client in list(self.clients):
            if client.overflowed.is_set():
                self.messages_dropped += 1
                continue
            if not client.offer(message):
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
