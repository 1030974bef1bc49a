"""`Hub.deliver` in-process (no server): each client gets exactly its filtered view, and each
distinct view of a message is encoded once — clients with the same view are handed the very same
`str` object, so counting distinct objects counts the `json.dumps` calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from framewatch.live.bus import LiveMessage
from framewatch.live.hub import EVERY_DETECTION, Client, Hub, Rendering, Subscription
from tests.live.clients import read_frames

PERSON = {"id": 11, "type": "person", "label": "person", "confidence": 0.9, "person_id": 7}
CAR = {"id": 12, "type": "vehicle", "label": "car", "confidence": 0.6, "person_id": None}
FAINT = {"id": 13, "type": "person", "label": "person", "confidence": 0.3, "person_id": None}
FRAME = LiveMessage(101, "detection", "gate", {
    "camera_id": "gate", "frame_id": 5, "processed_at": "2026-11-25T22:00:00+00:00",
    "detections": [PERSON, CAR, FAINT]})
EVENT = LiveMessage(102, "event", "gate", {
    "event": {"event_type": "frame.processed", "camera_id": "gate", "frame_id": 5,
              "detection_types": ["person", "vehicle"], "person_id": None}})


def client(*subscriptions: dict[str, Any], scope: set[str] | None = None) -> Client:
    made = Client(principal="test", buffer=10,
                  camera_scope=frozenset(scope) if scope is not None else None)
    for number, filters in enumerate(subscriptions):
        frozen = {key: frozenset(value) if isinstance(value, list) else value
                  for key, value in filters.items()}
        made.subscriptions[f"s{number}"] = Subscription(id=f"s{number}", **frozen)
    return made


def queued(target: Client) -> list[str]:
    texts = []
    while not target.outbox.empty():
        texts.append(target.outbox.get_nowait())
    return texts


async def test_each_distinct_view_is_encoded_once_and_shared() -> None:
    hub = Hub()
    clients = {
        # The whole frame, five ways: no filter, the camera named, with events, a detection
        # filter beside an unfiltered subscription, filters that together keep everything.
        "all": [client({}) for _ in range(50)],
        "gate": [client({"camera_ids": ["gate", "yard"]})],
        "all and events": [client({"events": True})],
        "persons and all": [client({"detection_types": ["person"]}, {})],
        "union of all": [client({"detection_types": ["vehicle"]},
                                {"detection_types": ["person"]})],
        # Filtered views: the same filter on 20 clients, and two others.
        "vehicles": [client({"detection_types": ["vehicle"]}) for _ in range(20)],
        "confident": [client({"min_confidence": 0.5})],
        "car or the known person": [client({"person_ids": [7]},
                                           {"detection_types": ["vehicle"]})],
        # Nothing at all.
        "yard": [client({"camera_ids": ["yard"]})],
        "out of scope": [client({}, scope={"yard"})],
        "no persons above 0.95": [client({"min_confidence": 0.95})],
        "events only": [client({"detections": False, "events": True})],
    }
    for group in clients.values():
        for each in group:
            hub.add(each)
    hub.deliver(FRAME)

    texts = {name: [text for each in group for text in queued(each)]
             for name, group in clients.items()}
    whole = texts["all"][0]
    assert json.loads(whole) == {"type": "detection", "id": 101, **FRAME.body}
    for name in ("all", "gate", "all and events", "persons and all", "union of all"):
        assert all(text is whole for text in texts[name]), name
    assert all(text is texts["vehicles"][0] for text in texts["vehicles"])

    def detections(name: str) -> list[dict[str, Any]]:
        (text,) = set(texts[name])
        body: dict[str, Any] = json.loads(text)
        assert {k: v for k, v in body.items() if k != "detections"} == {
            "type": "detection", "id": 101,
            **{k: v for k, v in FRAME.body.items() if k != "detections"}}
        return list(body["detections"])

    assert detections("vehicles") == [CAR]
    assert detections("confident") == [PERSON, CAR]
    # The union of two subscriptions, in the frame's order (not the subscriptions').
    assert detections("car or the known person") == [PERSON, CAR]
    for name in ("yard", "out of scope", "no persons above 0.95", "events only"):
        assert texts[name] == [], name
    # Different filters that keep the same detections share their text too.
    assert texts["confident"][0] is texts["car or the known person"][0]
    # Three distinct views, three encodings, for 76 messages queued.
    every = [text for group in texts.values() for text in group]
    assert len(every) == 50 + 4 + 20 + 2
    assert len({id(text) for text in every}) == 3
    assert hub.stats()["messages_dropped"] == 0

    hub.deliver(EVENT)
    wanted = [*clients["all and events"], *clients["events only"]]
    event_texts = [text for each in wanted for text in queued(each)]
    assert len(event_texts) == 2 and event_texts[0] is event_texts[1]
    assert json.loads(event_texts[0]) == {"type": "event", "id": 102, **EVENT.body}
    assert all(queued(each) == [] for group in clients.values() for each in group)


async def test_detections_without_ids_are_kept_apart() -> None:
    """Views are chosen by position: two detections that carry no id are two detections."""
    message = LiveMessage(7, "detection", "gate", {"detections": [
        {"type": "person", "confidence": 0.8}, {"type": "person", "confidence": 0.7},
        {"type": "vehicle", "confidence": 0.9}]})
    hub = Hub()
    persons = client({"detection_types": ["person"]})
    hub.add(persons)
    hub.deliver(message)
    (text,) = queued(persons)
    assert json.loads(text)["detections"] == message.body["detections"][:2]


async def test_a_full_buffer_drops_that_client_only() -> None:
    hub = Hub()
    slow, fast = client({}), client({})
    slow = Client(principal="test", buffer=1, subscriptions=dict(slow.subscriptions))
    hub.add(slow)
    hub.add(fast)
    for number in range(3):
        hub.deliver(LiveMessage(200 + number, "detection", "gate", {"detections": []}))
    assert slow.overflowed.is_set() and not fast.overflowed.is_set()
    assert [json.loads(text)["id"] for text in queued(fast)] == [200, 201, 202]
    assert [json.loads(text)["id"] for text in queued(slow)] == [200]
    assert hub.stats() == {
        "connections": 2, "subscriptions": 2, "messages_sent": 0, "messages_dropped": 2,
        "clients_dropped": 1}


async def test_a_client_that_keeps_up_is_written_to_at_once_and_order_is_kept_otherwise(
) -> None:
    """With a way to write frames (`framewatch serve`'s protocol), a client with nothing waiting
    gets the message's frame written at once; anything waiting, a send in progress or a socket
    that can't take more sends it to the queue, behind what is there."""
    written: list[tuple[str, bytes]] = []
    accepting = {"one": True, "two": True}

    def writer(name: str) -> Callable[[bytes], bool]:
        def write(frame: bytes) -> bool:
            if accepting[name]:
                written.append((name, frame))
            return accepting[name]
        return write

    hub = Hub()
    one, two, yard = client({}), client({}), client({"camera_ids": ["yard"]})
    for name, each in (("one", one), ("two", two), ("yard", yard)):
        each.write_frame = writer(name)
        hub.add(each)

    def message(number: int) -> LiveMessage:
        return LiveMessage(number, "detection", "gate", {"detections": [PERSON]})

    def ids(frames: list[bytes]) -> list[int]:
        return [json.loads(payload)["id"] for frame in frames
                for _, payload in read_frames(frame)]

    hub.deliver(message(1))
    assert sorted(name for name, _ in written) == ["one", "two"]
    assert written[0][1] is written[1][1]  # one frame for the view, shared
    assert read_frames(written[0][1]) == [(1, Rendering(message(1)).text(EVERY_DETECTION)
                                           .encode())]
    assert hub.messages_sent == 2 and one.sent == two.sent == 1

    accepting["one"] = False  # its socket's buffer is full
    hub.deliver(message(2))
    accepting["one"] = True
    hub.deliver(message(3))  # `one` has a message waiting: this one waits behind it
    assert ids([frame for name, frame in written if name == "two"]) == [1, 2, 3]
    # (Taken from the queue, as the send loop does: the next one can be written at once.)
    assert [json.loads(text)["id"] for text in queued(one)] == [2, 3]

    two.sending = True  # its send loop is between taking a message and writing it
    hub.deliver(message(4))
    assert [json.loads(text)["id"] for text in queued(two)] == [4]
    two.sending = False
    hub.deliver(message(5))
    assert ids([frame for name, frame in written if name == "one"]) == [1, 4, 5]
    assert ids([frame for name, frame in written if name == "two"]) == [1, 2, 3, 5]
    assert queued(yard) == [] and yard.sent == 0  # it wants none of it
    assert hub.stats()["messages_sent"] == 7  # written at once (the queued ones: by the loop)
