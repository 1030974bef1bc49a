"""The event timeline: opening an event, filters, keyset pages, live events."""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from tests.conftest import frame_bytes
from tests.dashboard.conftest import (
    BUILTIN_PROVIDER_ID,
    Served,
    expect,
    label_of,
    login,
    screenshot,
    wait_until,
)
from tests.queue.scenario import small_frame

PAGE_SIZE = 25  # framewatch/dashboard/static/js/timeline.js


def events(page: Any) -> Any:
    return page.locator("ol.timeline > li.event")


def js_round(value: float) -> int:
    """`Math.round`: halves go up."""
    return math.floor(value + 0.5)


def test_an_event_opens_with_its_annotated_frame_and_detection(page: Any, server: Served) -> None:
    server.enable_builtin()
    server.add_camera("gate", "Gate", provider_id=BUILTIN_PROVIDER_ID)
    sent = server.send_frame("gate", frame_bytes("street.jpg"))
    found = len(sent["detections"])
    assert found >= 5
    login(page, server)
    page.get_by_role("link", name="Events").click()

    processed = events(page).filter(has_text="frame.processed")
    expect(processed).to_have_count(1)
    expect(processed).to_contain_text(f"{found} detections on camera 'gate' by builtin")
    processed.get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile(r"^Event #\d+: frame\.processed$")))\
        .to_be_focused()
    image = dialog.locator("figure.annotated img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    expect(image).to_have_attribute("alt", f"Frame {sent['frame_id']} with its detections drawn")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 640
    expect(dialog.locator("dl.facts")).to_contain_text(f"Frame#{sent['frame_id']}")

    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # By keyboard: Enter opens, Escape closes and gives the focus back.
    processed.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(processed.get_by_role("button")).to_be_focused()

    # The tile's first detection, in detail: the figures the API gave.
    detection = sent["detections"][0]
    box = detection["bbox"]
    page.get_by_role("link", name="Cameras").click()
    page.get_by_role("button", name="Open the latest frame of Gate").click()
    dialog.get_by_role("button", name=f"{label_of(detection)} (#{detection['id']})").click()
    expect(dialog.get_by_role("heading", name=f"Detection #{detection['id']}")).to_be_visible()
    facts = dialog.locator("dl.facts")
    expect(facts).to_contain_text(f"Type{detection['type']}")
    expect(facts).to_contain_text(
        f"Confidence{js_round(detection['confidence'] * 1000) / 10:.1f}%")
    expect(facts).to_contain_text(
        f"Box{js_round(box['x_min'])}, {js_round(box['y_min'])} – "
        f"{js_round(box['x_max'])}, {js_round(box['y_max'])} px")
    expect(facts).to_contain_text("Providerbuiltin (")
    expect(dialog.locator("figure.annotated img")).to_have_attribute("src", re.compile("^blob:"))
    # Frame and facts side by side on a wide screen: both in view at once.
    expect(facts).to_be_in_viewport()
    screenshot(page, "detail")


def test_filters_pages_and_live_events(page: Any, server: Served) -> None:
    server.add_camera("gate", "Gate")
    server.add_camera("yard", "Yard")
    for index in range(PAGE_SIZE + 5):
        server.send_frame("gate", small_frame(100 + index))
    server.send_frame("yard", small_frame(1))
    # Two failed authentications: warnings about no camera.
    for _ in range(2):
        assert httpx.get(server.url + "/api/v1/cameras",
                         headers={"Authorization": "Bearer fw_wrong"}).status_code == 401

    login(page, server)
    page.get_by_role("link", name="Events").click()
    expect(events(page)).to_have_count(PAGE_SIZE)
    expect(page.get_by_role("button", name="Older")).to_be_visible()

    # One camera.
    page.get_by_label("Camera", exact=True).select_option("yard")
    page.get_by_role("button", name="Apply filters").click()
    expect(events(page)).to_have_count(2)  # camera.created, frame.processed
    for item in events(page).all():
        expect(item).to_have_attribute("data-camera-id", "yard")
    expect(page.get_by_role("button", name="Older")).to_be_hidden()

    # A type and a text, and the older pages.
    page.get_by_label("Camera", exact=True).select_option("")
    page.get_by_label("Type", exact=True).select_option("frame.processed")
    page.get_by_label("Text", exact=True).fill("GATE")
    page.get_by_role("button", name="Apply filters").click()
    expect(events(page)).to_have_count(PAGE_SIZE)
    page.get_by_role("button", name="Older").click()
    expect(events(page)).to_have_count(PAGE_SIZE + 5)
    expect(page.get_by_role("button", name="Older")).to_be_hidden()
    ids = [int(item.get_attribute("data-event-id")) for item in events(page).all()]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)

    # A new event that matches comes in live, at the top; one that does not, does not.
    server.send_frame("yard", small_frame(2))
    sent = server.send_frame("gate", small_frame(3))
    expect(events(page)).to_have_count(PAGE_SIZE + 6)
    expect(events(page).first).to_contain_text("1 detection on camera 'gate'")
    expect(events(page).first).to_have_class(re.compile(r"\bfresh\b"))
    assert sent["frame_id"]

    # Severity: this one or worse.
    page.get_by_role("button", name="Reset").click()
    page.get_by_label("Severity", exact=True).select_option("warning")
    page.get_by_role("button", name="Apply filters").click()
    expect(events(page)).to_have_count(2)
    expect(events(page).filter(has_text="auth.failed")).to_have_count(2)

    # Nothing matches: the empty state says so.
    page.get_by_label("Text", exact=True).fill("no such words anywhere")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("No events match these filters.")).to_be_visible()

    page.get_by_role("button", name="Reset").click()
    expect(events(page)).to_have_count(PAGE_SIZE)
    screenshot(page, "events")


def test_a_late_answer_to_older_filters_is_dropped(page: Any, server: Served) -> None:
    """Reset, then a camera chosen and applied at once: if the answer to the unfiltered request
    comes last, it must not replace (or mix into) the filtered list."""
    server.add_camera("gate", "Gate")
    server.add_camera("yard", "Yard")
    for index in range(3):
        server.send_frame("gate", small_frame(400 + index))
    server.send_frame("yard", small_frame(500))
    login(page, server)
    page.get_by_role("link", name="Events").click()
    expect(events(page)).not_to_have_count(0)

    held: list[Any] = []
    unfiltered = re.compile(r"/api/v1/detections/events\?limit=\d+$")
    page.route(unfiltered, lambda route: held.append(route))
    page.get_by_role("button", name="Reset").click()
    wait_until(page, lambda: held, "the unfiltered request to be held")
    page.get_by_label("Camera", exact=True).select_option("yard")
    page.get_by_role("button", name="Apply filters").click()
    expect(events(page)).to_have_count(2)  # camera.created, frame.processed

    with page.expect_response(unfiltered):
        held[0].continue_()
    # A live event for the yard comes after the late answer: the list is still the yard's.
    server.send_frame("yard", small_frame(501))
    expect(events(page)).to_have_count(3)
    cameras = {item.get_attribute("data-camera-id") for item in events(page).all()}
    assert cameras == {"yard"}
    page.unroute(unfiltered)
