"""The live connection: the disconnected state, automatic reconnection with backoff, resuming
with `last_event_id` (nothing missed, nothing reloaded) and `resync` after a server restart."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import frame_bytes
from tests.dashboard.conftest import BUILTIN_PROVIDER_ID, Served, expect, login, screenshot
from tests.dashboard.test_cameras import expect_frame, labels, tile
from tests.queue.scenario import small_frame

WS_URL = re.compile(r"^ws://127\.0\.0\.1:\d+/api/v1/detections/ws$")


def test_a_dropped_connection_resumes_where_it_left_off(page: Any, server: Served) -> None:
    """The WebSocket goes through the browser's own router, which can cut it and refuse new
    connections for a while; the server stays up, so it can replay what the page missed."""
    connections: list[Any] = []
    refusing = False

    def route(socket: Any) -> None:
        if refusing:
            socket.close(code=1013, reason="try again later")
        else:
            socket.connect_to_server()
            connections.append(socket)

    page.route_web_socket(WS_URL, route)
    camera_reads: list[str] = []
    page.on("request", lambda request: camera_reads.append(request.url)
            if request.url.endswith("/api/v1/cameras") else None)
    server.add_camera("gate", "Gate")
    first = server.send_frame("gate", small_frame(11))
    login(page, server)
    expect_frame(page, "gate", first["frame_id"], ["person 90%"])
    reads_before = len(camera_reads)

    refusing = True
    connections[-1].close(code=4000, reason="dropped by the test")  # both sides
    expect(page.locator("#live-status")).to_have_attribute("data-state", "disconnected")
    expect(page.locator("#banner")).to_contain_text("Live updates are disconnected")
    missed = server.send_frame("gate", small_frame(12))
    # Still the old frame: the page cannot know yet.
    expect(tile(page, "gate")).to_have_attribute("data-frame-id", str(first["frame_id"]))

    refusing = False
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect_frame(page, "gate", missed["frame_id"], ["person 90%"])
    assert len(connections) == 2
    # Replayed from last_event_id: no reload from the REST API was needed.
    assert len(camera_reads) == reads_before


def test_the_disconnected_state_shows_and_clears_when_the_server_returns(
    page: Any, server: Served
) -> None:
    server.enable_builtin()
    server.add_camera("drive", "Driveway", provider_id=BUILTIN_PROVIDER_ID)
    server.add_camera("gate", "Gate")
    drive = server.send_frame("drive", frame_bytes("motorcycle.jpg"))
    login(page, server)
    expect_frame(page, "drive", drive["frame_id"], labels(drive))
    expect(tile(page, "gate")).to_be_visible()

    server.stop()
    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Live updates are disconnected. Reconnecting in")
    expect(page.locator("#live-status")).to_have_text("Disconnected")
    expect(banner.get_by_role("button", name="Reconnect now")).to_be_visible()
    # What the page showed stays on screen while it reconnects.
    expect_frame(page, "drive", drive["frame_id"], labels(drive))
    screenshot(page, "disconnected")

    # While the server is away a frame arrives (through another instance, say); the restarted
    # server no longer has the messages the page missed: it says `resync` and the page reloads.
    server.start()
    sent = server.send_frame("gate", small_frame(8))
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(banner).to_be_hidden()
    expect_frame(page, "gate", sent["frame_id"], ["person 90%"])
    later = server.send_frame("gate", small_frame(9))
    expect_frame(page, "gate", later["frame_id"], ["person 90%"])
