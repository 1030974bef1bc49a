"""Statistics: detections per hour by type, provider latency, queue and cache charts."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from tests.conftest import frame_bytes
from tests.dashboard.conftest import BUILTIN_PROVIDER_ID, Served, expect, login, screenshot
from tests.queue.scenario import small_frame


def wait_for_rollup(server: Served, detections: int, providers: int,
                    within: float = 60.0) -> Any:
    """The hourly roll-up runs every second here (stats_interval_seconds=1); answers the
    statistics the dashboard then shows."""
    deadline = time.monotonic() + within
    figures: Any = None
    while time.monotonic() < deadline:
        figures = server.call("GET", "/api/v1/detections/statistics", params={"bucket": "hour"})
        if figures["detections"] >= detections and len(figures["providers"]) >= providers:
            return figures
        time.sleep(0.2)
    raise AssertionError(f"no roll-up within {within} s: {figures}")


def js_round(value: float) -> int:
    return math.floor(value + 0.5)


def test_statistics_show_detections_latency_queue_and_cache(page: Any, server: Served) -> None:
    server.enable_builtin()
    server.add_camera("gate", "Gate")
    server.add_camera("street", "High street", provider_id=BUILTIN_PROVIDER_ID)
    sent = [server.send_frame("gate", small_frame(200 + index)) for index in range(6)]
    sent.append(server.send_frame("gate", small_frame(200)))  # the same bytes: a cache hit
    for photo in ("street.jpg", "astronaut.jpg", "motorcycle.jpg"):
        sent.append(server.send_frame("street", frame_bytes(photo)))
    server.call("POST", "/api/v1/detections/send-frame", expect=202,
                files={"image": ("q.jpg", small_frame(300), "image/jpeg")},
                data={"camera_id": "gate", "mode": "async"})
    by_type = Counter(d["type"] for answer in sent for d in answer["detections"])
    assert set(by_type) == {"person", "face", "vehicle"}
    stats = wait_for_rollup(server, detections=by_type.total(), providers=2)
    assert {t["type"]: t["detections"] for t in stats["by_type"]} == by_type

    login(page, server)
    page.get_by_role("link", name="Statistics").click()
    per_hour = page.locator("figure[data-chart='per-hour']")
    expect(per_hour.locator("svg[role='img']")).to_have_attribute(
        "aria-label", "Detections per hour over the last 24 hours: " + ", ".join(
            f"{t['detections']} {t['type']}" for t in stats["by_type"]))
    # One bar per type and hour with detections (one hour, unless the test crossed one).
    expect(per_hour.locator("rect.bar")).to_have_count(
        sum(1 for point in stats["series"] for count in point["by_type"].values() if count))
    expect(per_hour.locator(".legend li")).to_have_text([t["type"] for t in stats["by_type"]])

    latency = page.locator("figure[data-chart='latency']")
    expect(latency.locator("rect.bar")).to_have_count(4)  # p50 and p95 of builtin and flaky
    expect(latency.locator("svg[role='img']")).to_have_attribute("aria-label", "; ".join(
        f"{p['provider']}: p50 {js_round(p['latency_ms_p50'])} ms, "
        f"p95 {js_round(p['latency_ms_p95'])} ms" for p in stats["providers"]))

    queue = page.locator("figure[data-chart='queue']")
    expect(queue.locator("g.hbar[data-label='done'] text.bar-value")).to_have_text("1")
    expect(queue.locator("circle.dot")).not_to_have_count(0)

    cache = page.locator("figure[data-chart='cache']")
    expect(cache.locator("g.hbar[data-label='frame'] text.bar-value")).to_contain_text("(1/")

    # The figures are in a table too: the column totals are the detections of each hour.
    per_hour.get_by_text("Show the figures").click()
    expect(per_hour.locator("table")).to_be_visible()
    totals = per_hour.locator("table tbody tr td:last-child")
    assert sum(int(text) for text in totals.all_text_contents()) == by_type.total()
    per_hour.get_by_text("Show the figures").click()
    screenshot(page, "statistics")
