"""`GET /api/v1/detections/events` on SQLite and PostgreSQL: each filter alone and combined,
severity as a floor, text search with LIKE wildcards taken literally, detection types from
`frame.processed` events, keyset pages under inserts, and the 4xx answers.

Events are written through the models with chosen times; what a filter should return is also
worked out in Python from every stored row, independently of the SQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from framewatch.core.database import utcnow
from framewatch.events.service import EventType, record_event
from framewatch.models import DetectionEventLog
from tests.api.helpers import add_camera, add_provider, assert_error, post_frame, rows_of
from tests.api_fixtures import Api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

EVENTS = "/api/v1/detections/events"
T0 = (utcnow() - timedelta(days=2)).replace(second=0, microsecond=0)
SEVERITIES = ["debug", "info", "warning", "error", "critical"]

# name: (event_type, severity, camera, provider, detection types, message, minutes after T0)
SEED: dict[str, tuple[str, str, str | None, str | None, str | None, str, int]] = {
    "e1": ("frame.processed", "info", "gate", "flaky", ",person,", "1 detections on gate", 0),
    "e2": ("provider.error", "error", "gate", "flaky", None, "flaky failed 50% of calls", 1),
    "e3": ("queue.retry", "warning", "yard", "flaky", None, "retry_after 5 s", 2),
    "e4": ("queue.dead_letter", "error", "yard", "other", None, r"dead: C:\frames\x.jpg", 3),
    "e5": ("provider.down", "critical", None, "other", None, "provider other is DOWN", 4),
    "e6": ("frame.processed", "info", "yard", "other", ",face,person,",
           "2 detections on YARD", 5),
    "e7": ("retention.cleanup", "debug", None, None, None, "deleted a_b and ab", 6),
    "e8": ("frame.processed", "info", "gate", "flaky", ",face,", "100% face match", 7),
    # The same instant as e8: the id breaks the tie.
    "e9": ("frame.queued", "warning", "gate", "flaky", None, "queued, flaky is down", 7),
}


async def seed(api: Api) -> dict[str, int]:
    """The SEED events, written in order; returns their ids by name."""
    rows = {}
    async with api.runtime.session_factory() as session:
        for name, (kind, severity, camera, provider, types, message, minutes) in SEED.items():
            rows[name] = DetectionEventLog(
                event_type=kind, severity=severity, camera_id=camera, provider=provider,
                detection_types=types, message=message, payload={"name": name},
                created_at=T0 + timedelta(minutes=minutes))
            session.add(rows[name])
            await session.flush()
        await session.commit()
    return {name: row.id for name, row in rows.items()}


async def fetch(api: Api, params: Any) -> dict[str, Any]:
    response = await api.client.get(EVENTS, params=params, headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ids(api: Api, params: Any) -> list[int]:
    """Every id the filter returns, following next_cursor."""
    pairs = list(params.items()) if isinstance(params, dict) else list(params)
    found: list[int] = []
    cursor = None
    while True:
        page = await fetch(api, [*pairs, *([("cursor", cursor)] if cursor else [])])
        found += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def newest_first(rows: list[DetectionEventLog], keep: Callable[[DetectionEventLog], bool]) -> list[
        int]:
    return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)
            if keep(r)]


def in_window(*names: str) -> Callable[[dict[str, int]], list[int]]:
    """The ids of the named SEED events, newest first (SEED order breaks ties by id)."""
    def pick(seeded: dict[str, int]) -> list[int]:
        order = sorted(names, key=lambda n: (SEED[n][6], seeded[n]), reverse=True)
        return [seeded[n] for n in order]
    return pick


WINDOW = [("since", T0.isoformat()), ("until", (T0 + timedelta(hours=1)).isoformat())]
# Each filter over the seeded window, with the events it must return.
CASES: list[tuple[list[tuple[str, str]], Callable[[dict[str, int]], list[int]]]] = [
    ([], in_window(*SEED)),
    ([("camera_id", "gate")], in_window("e1", "e2", "e8", "e9")),
    ([("camera_id", "nowhere")], in_window()),
    ([("event_type", "frame.processed")], in_window("e1", "e6", "e8")),
    ([("event_type", "queue.retry"), ("event_type", "queue.dead_letter")],
     in_window("e3", "e4")),
    ([("severity", "debug")], in_window(*SEED)),
    ([("severity", "info")], in_window(*(n for n in SEED if n != "e7"))),
    ([("severity", "warning")], in_window("e2", "e3", "e4", "e5", "e9")),
    ([("severity", "error")], in_window("e2", "e4", "e5")),
    ([("severity", "critical")], in_window("e5")),
    ([("provider", "other")], in_window("e4", "e5", "e6")),
    ([("detection_type", "person")], in_window("e1", "e6")),
    ([("detection_type", "face")], in_window("e6", "e8")),
    ([("detection_type", " PERSON ")], in_window("e1", "e6")),  # as /detections?types= reads
    ([("detection_type", "fac")], in_window()),  # whole types only
    ([("detection_type", "%")], in_window()),
    ([("q", "50%")], in_window("e2")),
    ([("q", "%")], in_window("e2", "e8")),  # a literal percent sign, not "anything"
    ([("q", "_")], in_window("e3", "e7")),  # a literal underscore, not "any character"
    ([("q", "a_b")], in_window("e7")),  # would match "ab" too if `_` were a wildcard
    ([("q", "\\frames\\")], in_window("e4")),
    ([("q", "yard")], in_window("e6")),  # case-insensitive: "YARD"
    ([("q", "down")], in_window("e5", "e9")),
    ([("since", (T0 + timedelta(minutes=5)).isoformat())], in_window("e6", "e7", "e8", "e9")),
    ([("until", (T0 + timedelta(minutes=2)).isoformat())], in_window("e1", "e2")),
    ([("camera_id", "gate"), ("event_type", "frame.processed"), ("detection_type", "face")],
     in_window("e8")),
    ([("severity", "warning"), ("provider", "flaky")], in_window("e2", "e3", "e9")),
    ([("provider", "other"), ("q", "detections")], in_window("e6")),
    ([("camera_id", "yard"), ("severity", "error"), ("q", "DEAD")], in_window("e4")),
    ([("event_type", "frame.processed"), ("detection_type", "person"),
      ("since", (T0 + timedelta(minutes=1)).isoformat())], in_window("e6")),
]


async def test_each_filter_returns_exactly_its_events(api_any_db: Api) -> None:
    seeded = await seed(api_any_db)
    for params, expected in CASES:
        want = expected(seeded)
        assert await ids(api_any_db, [*WINDOW, *params, ("limit", "2")]) == want, params
        assert await ids(api_any_db, [*WINDOW, *params, ("limit", "500")]) == want, params


# The same filters without the window, against every stored row (the app's own events too).
PREDICATES: list[tuple[dict[str, Any], Callable[[DetectionEventLog], bool]]] = [
    ({}, lambda e: True),
    ({"camera_id": "gate"}, lambda e: e.camera_id == "gate"),
    ({"event_type": "camera.created"}, lambda e: e.event_type == "camera.created"),
    ({"severity": "warning"}, lambda e: SEVERITIES.index(e.severity) >= 2),
    ({"provider": "flaky"}, lambda e: e.provider == "flaky"),
    ({"detection_type": "face"}, lambda e: ",face," in (e.detection_types or "")),
    ({"q": "camera"}, lambda e: "camera" in e.message.lower()),
    ({"q": "_"}, lambda e: "_" in e.message),
]


async def test_filters_agree_with_python_over_every_row(api_any_db: Api) -> None:
    await add_camera(api_any_db, "gate")
    await seed(api_any_db)
    rows = await rows_of(api_any_db, DetectionEventLog)
    assert len(rows) > len(SEED)  # camera.created and key.created are there too
    for params, keep in PREDICATES:
        expected = newest_first(rows, keep)
        assert await ids(api_any_db, {**params, "limit": 500}) == expected, params
        assert await ids(api_any_db, {**params, "limit": 3}) == expected, params


async def test_an_item_shows_every_field(api_any_db: Api) -> None:
    seeded = await seed(api_any_db)
    page = await fetch(api_any_db, [*WINDOW, ("detection_type", "face"), ("limit", "1")])
    assert page["items"] == [{
        "id": seeded["e8"], "event_type": "frame.processed", "severity": "info",
        "camera_id": "gate", "frame_id": None, "detection_id": None, "person_id": None,
        "provider": "flaky",
        "detection_types": ["face"], "message": "100% face match", "payload": {"name": "e8"},
        "actor": None, "created_at": page["items"][0]["created_at"],
    }]
    assert page["items"][0]["created_at"].startswith(
        (T0 + timedelta(minutes=7)).strftime("%Y-%m-%dT%H:%M:00"))
    assert page["next_cursor"] is not None  # e6 is older and matches too


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


async def test_frame_processed_events_carry_their_detection_types(
    api_any_db: Api, flaky_url: str
) -> None:
    api = api_any_db
    await add_provider(api, **flaky_provider_body(flaky_url))
    await add_camera(api, "gate")
    frames = []
    for index in range(3):
        response = await post_frame(api, small_frame(index))
        assert response.status_code == 200, response.text
        frames.append(response.json()["frame_id"])
    # A frame with nothing found, and counts with a zero: no type, and only the non-zero ones.
    async with api.runtime.session_factory() as session:
        record_event(session, EventType.FRAME_PROCESSED, "nothing", camera_id="gate",
                     payload={"counts": {}})
        record_event(session, EventType.FRAME_PROCESSED, "mixed", camera_id="gate",
                     payload={"counts": {"vehicle": 2, "face": 0, "animal": 1}})
        await session.commit()
    stored = await rows_of(api, DetectionEventLog,
                           DetectionEventLog.event_type == "frame.processed")
    assert [(e.frame_id, e.detection_types) for e in stored] == [
        *[(f, ",person,") for f in frames], (None, None), (None, ",animal,vehicle,")]
    processed = [e.id for e in reversed(stored[:3])]
    params = {"event_type": "frame.processed", "detection_type": "person"}
    assert await ids(api, params) == processed
    page = await fetch(api, params)
    assert [(i["frame_id"], i["detection_types"], i["provider"]) for i in page["items"]] == [
        (f, ["person"], "flaky") for f in reversed(frames)]
    assert await ids(api, {"detection_type": "vehicle"}) == [stored[-1].id]
    assert await ids(api, {"detection_type": "animal"}) == [stored[-1].id]
    assert await ids(api, {"detection_type": "face"}) == []


async def test_pages_stay_stable_while_events_are_added(api_any_db: Api) -> None:
    api = api_any_db
    await seed(api)
    before = newest_first(await rows_of(api, DetectionEventLog), lambda e: True)
    walked: list[int] = []
    added_late = None
    cursor = None
    for turn in range(100):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await fetch(api, params)
        assert 1 <= len(page["items"]) <= 2
        walked += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Between pages: a newer event (ahead of the walk), and once an event older than any
        # other (behind it, so the walk reaches it).
        async with api.runtime.session_factory() as session:
            session.add(DetectionEventLog(event_type="camera.updated", severity="info",
                                          message=f"new {turn}", created_at=utcnow()))
            if turn == 1:
                late = DetectionEventLog(event_type="camera.updated", severity="info",
                                         message="late", created_at=T0 - timedelta(days=1))
                session.add(late)
                await session.flush()
                added_late = late.id
            await session.commit()
    assert added_late is not None
    assert walked == [*before, added_late]
    assert len(set(walked)) == len(walked)
    everything = newest_first(await rows_of(api, DetectionEventLog), lambda e: True)
    assert await ids(api, {"limit": 4}) == everything
    assert len(everything) == len(before) + turn + 1


async def test_ties_on_time_are_paged_by_id(api_any_db: Api) -> None:
    seeded = await seed(api_any_db)
    first = await fetch(api_any_db, [*WINDOW, ("limit", "1")])
    assert [i["id"] for i in first["items"]] == [seeded["e9"]]
    second = await fetch(api_any_db, [*WINDOW, ("limit", "1"), ("cursor", first["next_cursor"])])
    assert [i["id"] for i in second["items"]] == [seeded["e8"]]


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "not-a-cursor", "!!!", "é", cursor_of(["2026-01-01T00:00:00+00:00"]),
    cursor_of(["2026-01-01T00:00:00", 5]),  # no time zone
    cursor_of(["2026-01-01T00:00:00+00:00", 0]), cursor_of(["2026-01-01T00:00:00+00:00", 2**63]),
    cursor_of(["2026-01-01T00:00:00+00:00", True]), cursor_of(["yesterday", 5]),
    cursor_of(["0001-01-01T00:00:00+01:00", 5]), cursor_of(None), cursor_of({"a": 1, "b": 2}),
]
INVALID = [
    {"event_type": "frame.exploded"}, {"severity": "fatal"}, {"limit": 0}, {"limit": 501},
    {"limit": "many"}, {"since": "2026-01-01T00:00:00"}, {"until": "yesterday"},
    {"q": "x" * 201}, {"cursor": "c" * 201},
]


async def test_bad_input_is_4xx_with_the_error_body(api_any_db: Api) -> None:
    async def get(params: dict[str, Any]) -> Any:
        return await api_any_db.client.get(EVENTS, params=params,
                                           headers=api_any_db.auth("viewer"))

    await seed(api_any_db)
    good = await fetch(api_any_db, {"limit": 1})
    assert good["next_cursor"] is not None
    for cursor in BAD_CURSORS:
        body = assert_error(await get({"cursor": cursor}), 400, "bad_request")
        assert body["field"] == "cursor", cursor
    for field in ("camera_id", "provider", "detection_type", "q"):
        body = assert_error(await get({field: "ga\x00te"}), 400, "bad_request")
        assert "NUL" in body["detail"] and body["field"] == field
    for params in INVALID:
        assert_error(await get(params), 422, "validation_error")
    # An out-of-range time is refused too, as a 400 rather than a database error.
    body = assert_error(await get({"since": "0001-01-01T00:00:00+01:00"}), 400, "bad_request")
    assert body["field"] == "since"


async def test_limit_bounds(api_any_db: Api) -> None:
    api = api_any_db
    async with api.runtime.session_factory() as session:
        session.add_all(DetectionEventLog(event_type="camera.updated", severity="info",
                                          message=f"bulk {i}", created_at=T0 + timedelta(
                                              seconds=i)) for i in range(505))
        await session.commit()
    total = len(await rows_of(api, DetectionEventLog))
    assert total > 505
    full = await fetch(api, {"limit": 500})
    assert len(full["items"]) == 500 and full["next_cursor"] is not None
    rest = await fetch(api, {"limit": 500, "cursor": full["next_cursor"]})
    assert len(rest["items"]) == total - 500 and rest["next_cursor"] is None
    default = await fetch(api, {})
    assert len(default["items"]) == 50
    one = await fetch(api, {"limit": 1})
    assert [i["id"] for i in one["items"]] == [full["items"][0]["id"]]


async def test_events_need_a_key(api_any_db: Api) -> None:
    response = await api_any_db.client.get(EVENTS)
    assert_error(response, 401, "unauthorized")
