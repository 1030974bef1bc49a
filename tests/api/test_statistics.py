"""`GET /api/v1/detections/statistics` on SQLite and PostgreSQL: totals, series, confidence,
provider and queue figures from the roll-ups (hourly, and daily for whole days), the camera
filter, range validation and the cache. Frames go through the flaky provider on two cameras;
further detections and provider errors are written through the models at chosen hours, then
`aggregate_stats` rolls them up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from framewatch.core.database import utcnow
from framewatch.models import Detection, DetectionEventLog, Frame
from framewatch.models.stats import LATENCY_BUCKETS_MS
from framewatch.stats.queries import percentile
from framewatch.stats.rollup import aggregate_stats
from tests.api.helpers import add_camera, add_provider, assert_error, post_frame
from tests.api_fixtures import Api, make_settings, start_api
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.stats.roll_ups import empty_coarse_roll_ups
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import serve_app

STATS = "/api/v1/detections/statistics"
QUIET = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
         "cleanup_interval_seconds": 3600}
# Midnight (UTC) three days ago; everything happens from 22:00 that day to 02:00 the next.
D = (utcnow() - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
SINCE, UNTIL = D + timedelta(hours=22), D + timedelta(hours=26)
RANGE = {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}


def at(hours: int, minutes: int) -> datetime:
    return D + timedelta(hours=hours, minutes=minutes)


@pytest.fixture
def flaky_url() -> Iterator[str]:
    with serve_app(FlakyProvider().app()) as url:
        yield url


@asynccontextmanager
async def stats_api(tmp_path: Path, url: str, provider_url: str,
                    **overrides: Any) -> AsyncIterator[Api]:
    apps = start_api(make_settings(tmp_path, url, **{**QUIET, **overrides}))
    api = await anext(apps)
    await empty_coarse_roll_ups(api.runtime.session_factory)
    try:
        await add_provider(api, **flaky_provider_body(provider_url))
        await add_camera(api, "gate")
        await add_camera(api, "yard")
        yield api
    finally:
        await empty_coarse_roll_ups(api.runtime.session_factory)
        await anext(apps, None)


def detection(frame_id: int, camera: str, kind: str, label: str, confidence: float,
              moment: datetime) -> Detection:
    return Detection(frame_id=frame_id, camera_id=camera, provider_name="flaky", model="m",
                     latency_ms=1.0, type=kind, label=label, confidence=confidence,
                     x_min=1, y_min=1, x_max=9, y_max=9, x_min_norm=0.01, y_min_norm=0.02,
                     x_max_norm=0.14, y_max_norm=0.19, detected_at=moment, created_at=moment)


def error(kind: str, camera: str, moment: datetime) -> DetectionEventLog:
    return DetectionEventLog(event_type=kind, severity="error", camera_id=camera,
                             provider="flaky", message=kind, created_at=moment)


async def build(api: Api) -> None:
    """Three frames (one person each, 0.9) and six more detections, with provider errors:

    gate: person 22:10, car 0.5 22:20, face 0.3 22:40, person 23:05, truck 0.7 23:30
    yard: person 01:30, face 0.6 01:40, car 0.8 01:45, bus 0.4 01:46 (the next day)
    Outside the range: a person at 21:59 and a car at 02:00 (the range's end).
    """
    frames = []
    for index, (camera, seen) in enumerate([("gate", at(22, 10)), ("gate", at(23, 5)),
                                            ("yard", at(25, 30))]):
        response = await post_frame(api, small_frame(index), camera_id=camera,
                                    captured_at=seen.isoformat())
        assert response.status_code == 200, response.text
        frames.append(response.json()["frame_id"])
    processed = [(at(22, 15), 20.0), (at(23, 6), 300.0), (at(25, 31), 8.0)]
    async with api.runtime.session_factory() as session:
        for frame_id, (moment, latency) in zip(frames, processed, strict=True):
            await session.execute(update(Frame).where(Frame.id == frame_id)
                                  .values(processed_at=moment, latency_ms=latency))
        f1, f2, f3 = frames
        session.add_all([
            detection(f1, "gate", "vehicle", "car", 0.5, at(22, 20)),
            detection(f1, "gate", "face", "face", 0.3, at(22, 40)),
            detection(f2, "gate", "vehicle", "truck", 0.7, at(23, 30)),
            detection(f3, "yard", "face", "face", 0.6, at(25, 40)),
            detection(f3, "yard", "vehicle", "car", 0.8, at(25, 45)),
            detection(f3, "yard", "vehicle", "bus", 0.4, at(25, 46)),
            detection(f1, "gate", "person", "person", 0.95, at(21, 59)),
            detection(f3, "yard", "vehicle", "car", 0.8, at(26, 0)),
            error("provider.error", "gate", at(22, 30)),
            error("queue.retry", "gate", at(23, 10)),
            error("queue.dead_letter", "yard", at(25, 50)),
            error("provider.error", "gate", at(21, 0)),  # outside the range
        ])
        await session.commit()
    report = await aggregate_stats(api.runtime)
    # 21:00 and 02:00 (outside the range) and 22:00, 23:00 and 01:00.
    assert report["hours_recomputed"] == 5


async def get(api: Api, params: Any) -> dict[str, Any]:
    response = await api.client.get(STATS, params=params, headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_type(body: dict[str, Any]) -> dict[str, tuple[int, float | None]]:
    counts = [t["detections"] for t in body["by_type"]]
    assert counts == sorted(counts, reverse=True)
    return {t["type"]: (t["detections"], t["avg_confidence"]) for t in body["by_type"]}


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def test_totals_series_and_figures(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        await build(api)
        body = await get(api, RANGE)
        assert moment(body["since"]) == SINCE and moment(body["until"]) == UNTIL
        assert body["camera_id"] is None and body["bucket"] == "hour"
        assert body["detections"] == 9
        assert body["avg_confidence"] == pytest.approx(6.0 / 9, abs=1e-4)
        assert by_type(body) == {"vehicle": (4, 0.6), "person": (3, 0.9), "face": (2, 0.45)}
        labels = [label["detections"] for label in body["by_label"]]
        assert labels == sorted(labels, reverse=True)
        assert {label["label"]: label["detections"] for label in body["by_label"]} == {
            "person": 3, "car": 2, "face": 2, "truck": 1, "bus": 1}
        assert body["by_camera"] == [{"camera_id": "gate", "detections": 5, "frames": 2},
                                     {"camera_id": "yard", "detections": 4, "frames": 1}]
        assert [(moment(p["bucket_start"]), p["detections"], p["by_type"])
                for p in body["series"]] == [
            (at(22, 0), 3, {"person": 1, "vehicle": 1, "face": 1}),
            (at(23, 0), 2, {"person": 1, "vehicle": 1}),
            (at(25, 0), 4, {"person": 1, "face": 1, "vehicle": 2}),
        ]
        assert body["providers"] == [{
            "provider": "flaky", "frames": 3, "errors": 3, "error_rate": 0.5,
            "dead_letters": 1, "latency_ms_avg": pytest.approx(328 / 3, abs=1e-3),
            # Latencies 8, 20 and 300 ms: buckets ≤10, 10–25 and 250–500.
            "latency_ms_p50": 17.5, "latency_ms_p95": 462.5,
        }]
        assert body["queue"] == {"frames_processed": 3, "dead_letters": 1,
                                 "frames_per_hour": round(3 / 4, 2)}
        assert body["rolled_up_to"] is not None
        assert moment(body["rolled_up_to"]) > UNTIL

        days = await get(api, {**RANGE, "bucket": "day"})
        assert [(moment(p["bucket_start"]), p["detections"], p["by_type"])
                for p in days["series"]] == [
            (D, 5, {"person": 2, "vehicle": 2, "face": 1}),
            (D + timedelta(days=1), 4, {"person": 1, "face": 1, "vehicle": 2}),
        ]
        assert {k: v for k, v in days.items() if k not in ("series", "bucket", "cache")} == {
            k: v for k, v in body.items() if k not in ("series", "bucket", "cache")}

        # A range inside one hour still reads that hour's whole roll-up (since is floored).
        inner = await get(api, {"since": at(23, 20).isoformat(),
                                "until": at(23, 50).isoformat()})
        assert moment(inner["since"]) == at(23, 0)
        assert inner["detections"] == 2 and by_type(inner) == {"person": (1, 0.9),
                                                               "vehicle": (1, 0.7)}
        # Nothing in range: zeros and nulls, not errors.
        empty = await get(api, {"since": (D - timedelta(days=5)).isoformat(),
                                "until": (D - timedelta(days=4)).isoformat()})
        assert (empty["detections"], empty["avg_confidence"], empty["by_type"],
                empty["series"], empty["providers"], empty["by_camera"]) == (
            0, None, [], [], [], [])
        assert empty["queue"] == {"frames_processed": 0, "dead_letters": 0,
                                  "frames_per_hour": 0.0}


async def test_the_camera_filter(tmp_path: Path, any_database_url: str, flaky_url: str) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        await build(api)
        gate = await get(api, {**RANGE, "camera_id": "gate"})
        assert gate["camera_id"] == "gate" and gate["detections"] == 5
        assert by_type(gate) == {"person": (2, 0.9), "vehicle": (2, 0.6), "face": (1, 0.3)}
        assert gate["by_camera"] == [{"camera_id": "gate", "detections": 5, "frames": 2}]
        assert [(moment(p["bucket_start"]), p["detections"]) for p in gate["series"]] == [
            (at(22, 0), 3), (at(23, 0), 2)]
        assert gate["providers"] == [{
            "provider": "flaky", "frames": 2, "errors": 2, "error_rate": 0.5,
            "dead_letters": 0, "latency_ms_avg": 160.0,
            "latency_ms_p50": 25.0, "latency_ms_p95": 475.0,
        }]
        yard = await get(api, {**RANGE, "camera_id": "yard"})
        assert yard["detections"] == 4 and yard["queue"]["dead_letters"] == 1
        assert yard["by_camera"] == [{"camera_id": "yard", "detections": 4, "frames": 1}]
        nowhere = await get(api, {**RANGE, "camera_id": "nowhere"})
        assert nowhere["detections"] == 0 and nowhere["by_camera"] == []
        # "*" is no wildcard, and its (empty) answer is not served for all cameras.
        star = await get(api, {**RANGE, "camera_id": "*"})
        assert star["detections"] == 0
        assert (await get(api, RANGE))["detections"] == 9


async def test_whole_days_from_the_daily_roll_ups_edges_from_the_hourly_ones(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    """Everything built happens from 21:00 on day D to 02:00 on D + 1: ranges of two whole days,
    of a whole day and three hours, and of two half days all hold all of it."""
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        await build(api)
        whole = await get(api, {"since": D.isoformat(),
                                "until": (D + timedelta(days=2)).isoformat(), "bucket": "day"})
        assert whole["detections"] == 11
        assert by_type(whole) == {"vehicle": (5, 0.64), "person": (4, 0.9125),
                                  "face": (2, 0.45)}
        assert {label["label"]: label["detections"] for label in whole["by_label"]} == {
            "person": 4, "car": 3, "face": 2, "truck": 1, "bus": 1}
        assert whole["by_camera"] == [{"camera_id": "gate", "detections": 6, "frames": 2},
                                      {"camera_id": "yard", "detections": 5, "frames": 1}]
        assert [(moment(p["bucket_start"]), p["detections"], p["by_type"])
                for p in whole["series"]] == [
            (D, 6, {"person": 3, "vehicle": 2, "face": 1}),
            (D + timedelta(days=1), 5, {"person": 1, "face": 1, "vehicle": 3}),
        ]
        assert [(p["frames"], p["errors"], p["dead_letters"]) for p in whole["providers"]] == [
            (3, 4, 1)]
        assert whole["queue"]["frames_per_hour"] == round(3 / 48, 2)
        same = ("detections", "avg_confidence", "by_type", "by_label", "by_camera", "series",
                "providers")
        for since, until in [(D, D + timedelta(hours=27)),
                             (D + timedelta(hours=12), D + timedelta(hours=36))]:
            other = await get(api, {"since": since.isoformat(), "until": until.isoformat(),
                                    "bucket": "day"})
            assert {k: other[k] for k in same} == {k: whole[k] for k in same}, since
        hours = await get(api, {"since": D.isoformat(),
                                "until": (D + timedelta(days=2)).isoformat()})
        assert [(moment(p["bucket_start"]), p["detections"]) for p in hours["series"]] == [
            (at(21, 0), 1), (at(22, 0), 3), (at(23, 0), 2), (at(25, 0), 4), (at(26, 0), 1)]
        gate = await get(api, {"since": D.isoformat(),
                               "until": (D + timedelta(days=2)).isoformat(), "camera_id": "gate"})
        assert gate["detections"] == 6
        assert by_type(gate) == {"person": (3, 0.9167), "vehicle": (2, 0.6), "face": (1, 0.3)}
        assert [(moment(p["bucket_start"]), p["detections"]) for p in gate["series"]] == [
            (at(21, 0), 1), (at(22, 0), 3), (at(23, 0), 2)]
        assert [(p["frames"], p["errors"]) for p in gate["providers"]] == [(2, 3)]


def test_percentile_on_hand_made_histograms() -> None:
    empty = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def histogram(**counts: int) -> list[int]:
        values = list(empty)
        for bucket, count in counts.items():
            values[int(bucket[1:])] = count
        return values

    assert percentile(empty, 0.5) is None
    assert percentile(histogram(b0=1), 0.5) == 5.0  # halfway through 0–10 ms
    assert percentile(histogram(b0=1), 1.0) == 10.0
    # Four calls in 50–100 ms and four in 100–250 ms.
    both = histogram(b3=4, b4=4)
    assert percentile(both, 0.5) == 100.0
    assert percentile(both, 0.25) == 75.0
    assert percentile(both, 0.95) == pytest.approx(100 + 150 * 3.6 / 4)
    assert percentile(both, 0.0) == 50.0
    # The open-ended last bucket reports its lower bound.
    slow = histogram(b10=3)
    assert percentile(slow, 0.5) == percentile(slow, 0.99) == 10000.0
    assert percentile(histogram(b1=9, b10=1), 0.95) == 10000.0
    assert percentile(histogram(b1=9, b10=1), 0.9) == 25.0
    assert percentile(histogram(b2=1, b9=1), 0.5) == 50.0
    assert percentile(histogram(b2=1, b9=1), 0.75) == 7500.0


async def test_range_validation(tmp_path: Path, any_database_url: str, flaky_url: str) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        async def call(params: dict[str, Any]) -> Any:
            return await api.client.get(STATS, params=params, headers=api.auth("viewer"))

        now = utcnow()
        for since, until in [(now, now), (now, now - timedelta(seconds=1)),
                             (now - timedelta(days=400, seconds=1), now)]:
            body = assert_error(await call({"since": since.isoformat(),
                                            "until": until.isoformat()}), 400, "bad_request")
            assert body["field"] == "since"
        # since alone, after now (the default until)
        assert_error(await call({"since": (now + timedelta(hours=1)).isoformat()}),
                     400, "bad_request")
        assert_error(await call({"camera_id": "ga\x00te"}), 400, "bad_request")
        for params in ({"bucket": "week"}, {"since": "2026-01-01T00:00:00"},
                       {"until": "soon"}, {"camera_id": "c" * 65}):
            assert_error(await call(params), 422, "validation_error")
        ok = await call({"since": (now - timedelta(days=400)).isoformat(),
                         "until": now.isoformat()})
        assert ok.status_code == 200, ok.text
        default = await get(api, {})
        assert moment(default["until"]) - moment(default["since"]) <= timedelta(hours=25)
        assert_error(await api.client.get(STATS), 401, "unauthorized")


async def test_a_second_call_within_the_ttl_is_served_from_the_cache(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        await build(api)
        before = api.runtime.cache.stats().get("stats", {"hits": 0, "misses": 0})
        first = await get(api, RANGE)
        # Newer roll-ups exist, but the cached answer is served until the TTL (300 s) ends.
        async with api.runtime.session_factory() as session:
            session.add(detection(1, "gate", "person", "person", 0.5, at(22, 50)))
            await session.commit()
        await aggregate_stats(api.runtime)
        second = await get(api, RANGE)
        after = api.runtime.cache.stats()["stats"]
        assert second == first and second["detections"] == 9
        assert after["hits"] == before["hits"] + 1
        assert after["misses"] == before["misses"] + 1
        # Another range, camera or bucket is another entry.
        assert (await get(api, {**RANGE, "camera_id": "gate"}))["detections"] == 6
        assert (await get(api, {**RANGE, "bucket": "day"}))["detections"] == 10
        assert api.runtime.cache.stats()["stats"]["misses"] == before["misses"] + 3
        # An open-ended range is cached too (per minute), whether or not `since` is given.
        for params in ({}, {"since": SINCE.isoformat()}):
            for _ in range(2):  # a minute may turn between the two calls, once
                hits = api.runtime.cache.stats()["stats"]["hits"]
                minute = utcnow().strftime("%H%M")
                one, two = await get(api, params), await get(api, params)
                if utcnow().strftime("%H%M") == minute:
                    break
            assert api.runtime.cache.stats()["stats"]["hits"] == hits + 1, params
            assert one == two


async def test_concurrent_misses_of_one_range_sum_the_roll_ups_once(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url) as api:
        await build(api)
        before = api.runtime.cache.stats().get("stats", {"hits": 0, "misses": 0})
        answers = await asyncio.gather(*(get(api, RANGE) for _ in range(12)))
        after = api.runtime.cache.stats()["stats"]
        assert all(answer == answers[0] for answer in answers)
        assert answers[0]["detections"] == 9
        assert after["misses"] == before["misses"] + 1  # one rebuild for the twelve
        assert after["hits"] == before["hits"] + 11


async def test_a_call_after_the_ttl_recomputes(
    tmp_path: Path, any_database_url: str, flaky_url: str
) -> None:
    async with stats_api(tmp_path, any_database_url, flaky_url, stats_ttl_seconds=0.2) as api:
        await build(api)
        first = await get(api, RANGE)
        async with api.runtime.session_factory() as session:
            session.add(detection(1, "gate", "person", "person", 0.5, at(22, 50)))
            await session.commit()
        await aggregate_stats(api.runtime)
        await asyncio.sleep(0.3)
        misses = api.runtime.cache.stats()["stats"]["misses"]
        second = await get(api, RANGE)
        assert api.runtime.cache.stats()["stats"]["misses"] == misses + 1
        assert (first["detections"], second["detections"]) == (9, 10)
        assert by_type(second)["person"] == (4, pytest.approx(0.8))
        # The answer reports this process's cache figures, hit rate included.
        figures = second["cache"]["stats"]
        assert figures["misses"] == misses + 1 and figures["hits"] == 0
        assert figures["hit_rate"] == 0.0
