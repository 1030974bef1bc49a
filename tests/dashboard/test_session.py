"""Logging in and out, and what each role is shown."""

from __future__ import annotations

from typing import Any

from tests.conftest import frame_bytes
from tests.dashboard.conftest import Served, expect, login, screenshot


def test_a_wrong_key_is_refused_and_a_right_one_logs_in_and_out(page: Any, server: Served) -> None:
    page.goto(server.url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    page.get_by_label("API key").fill("fw_not_a_key_at_all")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text(
        "That key was refused: it is unknown, revoked or expired.")
    assert page.evaluate("sessionStorage.length") == 0

    login(page, server)
    expect(page.locator("#role")).to_have_text("admin")
    expect(page.get_by_role("heading", name="Cameras")).to_be_visible()
    # The key lives in this tab's sessionStorage only: never in the address.
    assert page.evaluate("sessionStorage.getItem('framewatch.apiKey')") == server.keys["admin"]
    assert server.keys["admin"] not in page.url

    # A reload keeps the session (same tab) ...
    page.reload()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

    # ... and logging out forgets the key.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("You have logged out.")
    assert page.evaluate("sessionStorage.getItem('framewatch.apiKey')") is None


def test_a_viewer_sees_no_admin_controls(page: Any, server: Served) -> None:
    server.add_camera("gate", "Gate")
    server.send_frame("gate", frame_bytes("street.jpg"))
    login(page, server, role="viewer")
    expect(page.locator("#role")).to_have_text("viewer")

    page.get_by_role("link", name="Providers").click()
    row = page.locator("tr[data-provider='flaky']")
    expect(row.get_by_role("button", name="Test provider flaky")).to_be_disabled()
    expect(row.get_by_role("button", name="Configure provider flaky")).to_have_count(0)
    expect(page.get_by_role("button", name="Add a provider")).to_have_count(0)
    expect(page.get_by_text("needs an admin key (providers:admin)")).to_be_visible()

    page.get_by_role("link", name="Persons").click()
    expect(page.get_by_role("button", name="Add person")).to_have_count(0)
    expect(page.get_by_text("needs an admin key (persons:admin)")).to_be_visible()

    # A phone: everything reflows into the width, nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    for view, content in (("Cameras", "article.tile"), ("Events", "li.event"),
                          ("Statistics", "figure.chart-figure"), ("Persons", ".state-empty")):
        page.get_by_role("link", name=view).click()
        expect(page.locator(f"#view-{view.lower()} {content}").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, view
