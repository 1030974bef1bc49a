"""Which committed messages a subscription wants (framewatch/webhooks/filters.py), on the
messages the live stream carries."""

from __future__ import annotations

from typing import Any

from framewatch.live.outbox import Outgoing
from framewatch.webhooks.filters import Filters, about_itself


def frame(camera: str, *detections: dict[str, Any]) -> Outgoing:
    return Outgoing("detection", camera, {"camera_id": camera, "frame_id": 7,
                                          "detections": list(detections)})


def detection(kind: str, confidence: float, person_id: int | None = None) -> dict[str, Any]:
    return {"type": kind, "confidence": confidence, "person_id": person_id}


def event(kind: str, camera: str | None, person_id: int | None = None,
          types: tuple[str, ...] = ()) -> Outgoing:
    return Outgoing("event", camera, {"event": {
        "event_type": kind, "camera_id": camera, "person_id": person_id,
        "detection_types": list(types), "payload": {}}})


PERSON = detection("person", 0.9, person_id=3)
CAR = detection("vehicle", 0.6)


def test_no_filter_takes_every_frame_as_it_is() -> None:
    message = frame("gate", PERSON, CAR)
    assert Filters().select(message) == ("detection", message.body)
    assert Filters().select(frame("gate")) == ("detection", frame("gate").body)


def test_detection_filters_keep_only_the_detections_wanted() -> None:
    message = frame("gate", PERSON, CAR)
    kept = Filters(detection_types=frozenset({"vehicle"})).select(message)
    assert kept is not None and kept[1]["detections"] == [CAR]
    assert Filters(min_confidence=0.7).select(message) == (
        "detection", {**message.body, "detections": [PERSON]})
    assert Filters(person_ids=frozenset({3})).select(message) == (
        "detection", {**message.body, "detections": [PERSON]})
    # Nothing left: the frame is not sent at all.
    assert Filters(person_ids=frozenset({4})).select(message) is None
    assert Filters(detection_types=frozenset({"face"})).select(message) is None
    assert Filters(min_confidence=0.5).select(frame("gate")) is None


def test_the_camera_filter_and_the_message_types() -> None:
    gate_only = Filters(camera_ids=frozenset({"gate"}))
    assert gate_only.select(frame("yard", PERSON)) is None
    assert gate_only.select(frame("gate", PERSON)) is not None
    only_events = Filters(event_types=frozenset({"person.identified"}))
    assert only_events.select(frame("gate", PERSON)) is None
    identified = event("person.identified", "gate", person_id=3, types=("face",))
    assert only_events.select(identified) == ("person.identified", identified.body["event"])
    assert only_events.select(event("frame.processed", "gate")) is None
    assert Filters(event_types=frozenset({"event"})).select(event("frame.processed", "gate"))


def test_camera_events_pass_the_camera_person_and_type_filters() -> None:
    every = frozenset({"event"})
    assert Filters(camera_ids=frozenset({"gate"}), event_types=every).select(
        event("frame.processed", "yard")) is None
    people = Filters(person_ids=frozenset({3}), event_types=every)
    assert people.select(event("person.identified", "gate", person_id=3)) is not None
    assert people.select(event("person.identified", "gate", person_id=4)) is None
    faces = Filters(detection_types=frozenset({"face"}), event_types=every)
    assert faces.select(event("frame.processed", "gate", types=("face", "person")))
    assert faces.select(event("frame.processed", "gate", types=("person",))) is None
    assert faces.select(event("frame.processed", "gate")) is None


def test_an_event_about_no_camera_is_chosen_by_its_type_alone() -> None:
    narrow = Filters(camera_ids=frozenset({"gate"}), detection_types=frozenset({"person"}),
                     person_ids=frozenset({3}),
                     event_types=frozenset({"detection", "provider.down"}))
    down = event("provider.down", None)
    assert narrow.select(down) == ("provider.down", down.body["event"])
    assert narrow.select(event("provider.recovered", None)) is None


def test_a_subscription_is_never_told_of_its_own_dead_letters() -> None:
    data = {"event_type": "webhook.dead_letter", "payload": {"webhook_id": 5}}
    assert about_itself(5, "webhook.dead_letter", data)
    assert not about_itself(6, "webhook.dead_letter", data)
    assert not about_itself(5, "detection", data)
