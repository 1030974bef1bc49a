"""What is published where: committed live messages → MQTT topics and JSON payloads.

| topic | retained | payload |
|---|---|---|
| `<prefix>/<camera>/<type>` | no | a processed frame's detections of one type |
| `<prefix>/<camera>/<type>/last_seen` | configurable | the last frame with that type |
| `<prefix>/<camera>/state` | configurable | the camera's last processed frame, counts by type |
| `<prefix>/events/<event type>` | no | an event of a published type |
| `<prefix>/status` | yes | `online`, or `offline` (the broker's will) |

docs/webhooks.md documents the payloads and Home Assistant discovery.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from framewatch.live.outbox import Outgoing

OFF_DELAY_SECONDS = 30  # Home Assistant's binary sensors turn off after this without a detection


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: str
    retain: bool = False


def segment(name: str) -> str:
    """A topic level for a detection type (types may have spaces)."""
    return name.strip().replace(" ", "_").replace("/", "_")


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


@dataclass
class TopicPlan:
    prefix: str
    retain_last_seen: bool = True
    event_types: frozenset[str] = frozenset()
    discovery_prefix: str | None = None
    # (camera, type) pairs announced to Home Assistant on this connection.
    announced: set[tuple[str, str]] = field(default_factory=set)

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/status"

    def messages_for(self, message: Outgoing) -> list[MqttMessage]:
        if message.type == "detection" and message.camera_id:
            return self._detection(message.camera_id, message.body)
        if message.type == "event":
            event = message.body.get("event", {})
            kind = str(event.get("event_type", ""))
            if kind in self.event_types:
                return [MqttMessage(f"{self.prefix}/events/{kind}", dumps(event))]
        return []

    def _detection(self, camera: str, body: dict[str, Any]) -> list[MqttMessage]:
        detections: list[dict[str, Any]] = body.get("detections", [])
        counts = Counter(str(d.get("type")) for d in detections)
        frame = {"camera_id": camera, "frame_id": body.get("frame_id"),
                 "seen_at": body.get("seen_at"), "processed_at": body.get("processed_at"),
                 "provider": body.get("provider")}
        out = []
        for kind in sorted(counts):
            of_kind = [d for d in detections if d.get("type") == kind]
            topic = f"{self.prefix}/{camera}/{segment(kind)}"
            out += self._announce(camera, kind, topic)
            payload = {**frame, "type": kind, "count": counts[kind], "persons": persons(of_kind)}
            out.append(MqttMessage(topic, dumps({**payload, "detections": of_kind})))
            out.append(MqttMessage(f"{topic}/last_seen", dumps(payload), self.retain_last_seen))
        state = {**frame, "counts": dict(sorted(counts.items())), "persons": persons(detections)}
        out.append(MqttMessage(f"{self.prefix}/{camera}/state", dumps(state),
                               self.retain_last_seen))
        return out

    def _announce(self, camera: str, kind: str, topic: str) -> list[MqttMessage]:
        """Home Assistant discovery: one binary sensor per camera and type, on when it is seen
        and off `OFF_DELAY_SECONDS` after (announced once per connection; retained)."""
        if self.discovery_prefix is None or (camera, kind) in self.announced:
            return []
        self.announced.add((camera, kind))
        # The prefix keeps two installations on one broker apart (`framewatch` by default).
        device_id = f"{self.prefix}_{camera}".replace("-", "_").replace("/", "_")
        object_id = f"{device_id}_{segment(kind)}"
        config = {
            "name": f"{kind}",
            "unique_id": object_id,
            "state_topic": topic,
            "value_template": "ON",
            "payload_on": "ON",
            "off_delay": OFF_DELAY_SECONDS,
            "json_attributes_topic": f"{topic}/last_seen",
            "availability_topic": self.status_topic,
            "device": {"identifiers": [device_id], "name": f"Camera {camera}",
                       "manufacturer": "framewatch"},
        }
        if kind == "person":
            config["device_class"] = "occupancy"
        return [MqttMessage(f"{self.discovery_prefix}/binary_sensor/{object_id}/config",
                            dumps(config), retain=True)]


def persons(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The identified persons among `detections`, once each."""
    seen: dict[int, dict[str, Any]] = {}
    for detection in detections:
        person = detection.get("person")
        if person and person.get("id") not in seen:
            seen[person["id"]] = {"id": person["id"], "name": person.get("name")}
    return list(seen.values())
