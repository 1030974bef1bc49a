"""The camera grid: frames and their boxes, from the REST API and live over the WebSocket."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import frame_bytes
from tests.dashboard.conftest import (
    BUILTIN_PROVIDER_ID,
    Served,
    expect,
    label_of,
    login,
    screenshot,
)

BLOB_URL = re.compile(r"^blob:http://127\.0\.0\.1:\d+/")
STREET_SIZE = (640, 480)  # tests/data/street.jpg


def tile(page: Any, camera_id: str) -> Any:
    return page.locator(f"article.tile[data-camera-id='{camera_id}']")


def expect_frame(page: Any, camera_id: str, frame_id: int, labels: list[str]) -> None:
    """The tile shows frame `frame_id` (a blob: image, decoded) with one box per label."""
    card = tile(page, camera_id)
    expect(card).to_have_attribute("data-frame-id", str(frame_id))
    image = card.locator("img.frame-image")
    expect(image).to_have_attribute("src", BLOB_URL)
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(card.locator("svg.frame-overlay g.box")).to_have_count(len(labels))
    expect(card.locator("svg.frame-overlay text.box-label")).to_have_text(labels)
    expect(card.locator("ul.tile-labels li")).to_have_text(labels)


def labels(sent: dict[str, Any]) -> list[str]:
    """The labels of the detections a send-frame answer lists, in its order (the tile's)."""
    return [label_of(d) for d in sent["detections"]]


def test_a_posted_frame_shows_in_its_tile_with_its_box(page: Any, server: Served) -> None:
    server.enable_builtin()  # the real detector: real boxes on real photographs
    builtin = {"provider_id": BUILTIN_PROVIDER_ID}
    server.add_camera("drive", "Driveway", **builtin)
    server.add_camera("front-door", "Front door", **builtin)
    server.add_camera("street", "High street", **builtin)
    server.add_camera("yard", "Back yard")
    # Frames from before the page opened come from the REST API.
    drive = server.send_frame("drive", frame_bytes("motorcycle.jpg"))
    door = server.send_frame("front-door", frame_bytes("astronaut.jpg"))
    assert [d["type"] for d in drive["detections"]] == ["vehicle"]
    assert {"person", "face"} <= {d["type"] for d in door["detections"]}

    login(page, server)
    expect_frame(page, "drive", drive["frame_id"], labels(drive))
    expect_frame(page, "front-door", door["frame_id"], labels(door))
    expect(tile(page, "front-door").locator(".badge")).to_have_text("Online")
    expect(tile(page, "front-door").locator(".tile-meta")).to_contain_text(
        f"Frame #{door['frame_id']}")
    # A camera that never sent a frame: the empty state, offline, nothing to open.
    yard = tile(page, "yard")
    expect(yard.locator(".frame")).to_have_attribute("data-empty", "true")
    expect(yard.locator(".badge")).to_have_text("Offline")
    expect(yard.locator(".tile-meta")).to_have_text("flaky (closed)")
    expect(yard.get_by_role("button", name="Open the latest frame of Back yard")).to_be_disabled()

    # A photograph posted now reaches the open page over the WebSocket, boxes and all.
    expect(tile(page, "street").locator(".badge")).to_have_text("Offline")
    sent = server.send_frame("street", frame_bytes("street.jpg"))
    street_labels = labels(sent)
    assert len(street_labels) >= 5 and "vehicle" in {d["type"] for d in sent["detections"]}
    expect_frame(page, "street", sent["frame_id"], street_labels)
    expect(tile(page, "street").locator(".badge")).to_have_text("Online")
    # The first box drawn where the detector found it, in percent of the frame's size.
    first = sent["detections"][0]["bbox"]
    box = tile(page, "street").locator("svg.frame-overlay rect.box-frame").first
    width, height = STREET_SIZE
    drawn = {name: float(box.get_attribute(name).rstrip("%"))
             for name in ("x", "y", "width", "height")}
    assert drawn == pytest.approx({
        "x": first["x_min"] / width * 100, "y": first["y_min"] / height * 100,
        "width": (first["x_max"] - first["x_min"]) / width * 100,
        "height": (first["y_max"] - first["y_min"]) / height * 100}, abs=0.01)
    screenshot(page, "cameras", full_page=True)

    # The tile opens the frame's detail: the server's annotated image and the detections.
    tile(page, "street").get_by_role("button", name="Open the latest frame of High street").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"High street: frame #{sent['frame_id']}"))\
        .to_be_visible()
    expect(dialog.locator("figure.annotated img")).to_have_attribute("src", BLOB_URL)
    expect(dialog.locator("ul.detection-list button")).to_have_text(
        [f"{label} (#{d['id']})" for label, d in zip(street_labels, sent["detections"],
                                                     strict=True)])
