"""Which committed messages a subscription wants, and the JSON body it is sent.

The filters mean what they mean on the WebSocket (framewatch/live/hub.py): cameras, detection
types, minimum confidence and persons narrow `detection` messages to the detections wanted (a
frame without any is not sent, unless there are no detection filters); events are chosen by
type (`event` = all); an event about a camera must then also pass the camera filter, and the
person filter or else the detection-type filter when set. An event about no camera
(`provider.down`, `webhook.dead_letter`…) is chosen by its type alone: a subscription that names
it wants it, whatever cameras it watches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from framewatch.core.database import utcnow
from framewatch.events.service import EventType
from framewatch.live.outbox import Outgoing
from framewatch.models import WebhookSubscription

DETECTION = "detection"
ANY_EVENT = "event"
PING = "ping"
MESSAGE_TYPES = frozenset({DETECTION, ANY_EVENT} | {e.value for e in EventType})


@dataclass(frozen=True, slots=True)
class Filters:
    camera_ids: frozenset[str] | None = None
    detection_types: frozenset[str] | None = None
    person_ids: frozenset[int] | None = None
    min_confidence: float = 0.0
    event_types: frozenset[str] = frozenset({DETECTION})

    @classmethod
    def of(cls, subscription: WebhookSubscription) -> Filters:
        def some(values: list[Any] | None) -> frozenset[Any] | None:
            return frozenset(values) if values is not None else None

        return cls(some(subscription.camera_ids), some(subscription.detection_types),
                   some(subscription.person_ids), subscription.min_confidence,
                   frozenset(subscription.event_types or ()))

    def select(self, message: Outgoing) -> tuple[str, dict[str, Any]] | None:
        """(event type, data) to send for `message`, or None when it is not wanted."""
        if message.type == DETECTION:
            if self.camera_ids is not None and message.camera_id not in self.camera_ids:
                return None
            return self._detection(message.body)
        event: dict[str, Any] = message.body.get("event", {})
        kind = str(event.get("event_type", ""))
        if kind not in self.event_types and ANY_EVENT not in self.event_types:
            return None
        if message.camera_id is None:  # a system event: the camera filters do not apply
            return kind, event
        if self.camera_ids is not None and message.camera_id not in self.camera_ids:
            return None
        if self.person_ids is not None and event.get("person_id") not in self.person_ids:
            return None
        if (self.detection_types is not None and self.person_ids is None
                and not set(event.get("detection_types") or ()) & self.detection_types):
            return None
        return kind, event

    def _detection(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if DETECTION not in self.event_types:
            return None
        detections: list[dict[str, Any]] = body.get("detections", [])
        if (self.detection_types is None and self.person_ids is None
                and self.min_confidence <= 0):
            return DETECTION, body
        kept = [d for d in detections if self._wants(d)]
        return (DETECTION, {**body, "detections": kept}) if kept else None

    def _wants(self, detection: dict[str, Any]) -> bool:
        if self.detection_types is not None and detection.get("type") not in self.detection_types:
            return False
        if detection.get("confidence", 0.0) < self.min_confidence:
            return False
        return self.person_ids is None or detection.get("person_id") in self.person_ids


def about_itself(subscription_id: int, event_type: str, data: dict[str, Any]) -> bool:
    """A dead letter of this very subscription: never sent to it (a receiver that is down
    would otherwise get an endless chain of dead letters about its own dead letters)."""
    payload = data.get("payload") or {}
    return (event_type == EventType.WEBHOOK_DEAD_LETTER
            and payload.get("webhook_id") == subscription_id)


def envelope(subscription_id: int, event_type: str, data: dict[str, Any]) -> str:
    """The body POSTed: the same bytes at every attempt (they are signed)."""
    return json.dumps(
        {"type": event_type, "webhook_id": subscription_id,
         "created_at": utcnow().isoformat(), "data": data},
        separators=(",", ":"), default=str,
    )
