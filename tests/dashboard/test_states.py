"""The states around the content (loading, error and retry, empty), accessible markup and
keyboard use, and the layout on a phone."""

from __future__ import annotations

from typing import Any

from tests.conftest import frame_bytes
from tests.dashboard.conftest import (
    BUILTIN_PROVIDER_ID,
    Served,
    expect,
    login,
    screenshot,
    wait_until,
)
from tests.dashboard.test_cameras import expect_frame, labels, tile

VIEWS = ("Cameras", "Events", "Statistics", "Providers", "Persons")
PHONE = {"width": 390, "height": 844}

# What a screen reader needs from the page as it is now: a name for every visible control and
# button, a text alternative for every image and chart, unique ids, one h1, a named dialog.
AUDIT = """() => {
  const problems = [];
  const shown = (el) => el.getClientRects().length > 0;
  const byIds = (ids) => (ids || "").split(/\\s+/).filter(Boolean)
    .map((id) => (document.getElementById(id) || {}).textContent || "").join(" ");
  const labelled = (el) => (el.getAttribute("aria-label") || byIds(el.getAttribute(
    "aria-labelledby")) || [...(el.labels || [])].map((l) => l.textContent).join(" ")).trim();
  const describe = (el) => el.outerHTML.slice(0, 100);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (shown(el) && !labelled(el)) problems.push(`no label: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("button, a[href], summary")) {
    if (shown(el) && !(labelled(el) || el.textContent.trim())) {
      problems.push(`no name: ${describe(el)}`);
    }
  }
  for (const el of document.querySelectorAll("img")) {
    if (shown(el) && !el.hasAttribute("alt")) problems.push(`no alt: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("svg[role='img']")) {
    if (!labelled(el)) problems.push(`chart without a summary: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("dialog[open]")) {
    if (!labelled(el)) problems.push(`dialog without a name: ${describe(el)}`);
  }
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) {
    problems.push(`duplicate id: ${id}`);
  }
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  return problems;
}"""


def audit(page: Any, where: str) -> None:
    assert page.evaluate(AUDIT) == [], where


def test_loading_then_an_error_then_empty_then_live(page: Any, server: Served) -> None:
    """The first read of the cameras is held, then fails: the page says it is loading, then
    shows the API's error with a way to try again; no camera yet is its own state, and the first
    camera's first frame brings the grid."""
    held: list[Any] = []
    page.route("**/api/v1/cameras", lambda route: held.append(route))
    login(page, server)
    view = page.locator("#view-cameras .view-content")
    expect(view.get_by_role("status")).to_have_text("Loading cameras…")
    expect(view).to_have_attribute("aria-busy", "true")
    wait_until(page, lambda: held, "the cameras request to be held")
    held[0].fulfill(status=503, json={"error": "database_unavailable",
                                      "detail": "the database did not answer in time"})
    alert = view.get_by_role("alert")
    expect(alert.locator(".error-code")).to_have_text("database_unavailable")
    expect(alert.locator(".error-detail")).to_have_text("the database did not answer in time")
    expect(view).not_to_have_attribute("aria-busy", "true")

    page.unroute("**/api/v1/cameras")
    alert.get_by_role("button", name="Try again").click()
    expect(view.get_by_role("status")).to_have_text(
        "No cameras yet.An admin adds one with POST /api/v1/cameras or `framewatch cameras add`; "
        "its frames show here as they arrive.")

    # The first camera and its first frame: the page learns of the camera from the frame.
    server.add_camera("gate", "Gate")
    sent = server.send_frame("gate", frame_bytes("coffee.jpg"))
    expect_frame(page, "gate", sent["frame_id"], labels(sent))


def test_every_view_is_labelled_and_works_from_the_keyboard(page: Any, server: Served) -> None:
    server.add_camera("gate", "Gate")
    sent = server.send_frame("gate", frame_bytes("street.jpg"))
    login(page, server)
    expect_frame(page, "gate", sent["frame_id"], labels(sent))
    audit(page, "cameras")

    # The skip link comes before the navigation and takes the focus to the content.
    page.get_by_role("link", name="Cameras").focus()
    page.keyboard.press("Shift+Tab")
    skip = page.get_by_role("link", name="Skip to the content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # off screen until focused
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    # Every view from the keyboard: its link, Enter, the focus on its heading.
    for name in (*VIEWS[1:], VIEWS[0]):
        link = page.get_by_role("link", name=name)
        link.focus()
        page.keyboard.press("Enter")
        expect(link).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_focused()
        expect(page.locator(f"#view-{name.lower()} .view-content"))\
            .not_to_have_attribute("aria-busy", "true")
        audit(page, name)

    page.get_by_role("link", name="Providers").click()
    page.get_by_role("button", name="Configure provider flaky").click()
    expect(page.get_by_role("heading", name="Configure flaky")).to_be_focused()
    audit(page, "provider form")

    # The detail dialog holds the focus until Escape, then gives it back.
    page.get_by_role("link", name="Cameras").click()
    opener = page.get_by_role("button", name="Open the latest frame of Gate")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name=f"Gate: frame #{sent['frame_id']}")
    expect(dialog.locator("figure.annotated img")).to_be_visible()
    audit(page, "detail dialog")
    for _ in range(4):
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('detail').contains(document.activeElement)"
                             " || document.activeElement === document.body")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()


def test_on_a_phone_everything_fits_the_width(page: Any, server: Served) -> None:
    server.enable_builtin()
    server.add_camera("front-door", "Front door", provider_id=BUILTIN_PROVIDER_ID)
    server.add_camera("street", "High street", provider_id=BUILTIN_PROVIDER_ID)
    door = server.send_frame("front-door", frame_bytes("astronaut.jpg"))
    street = server.send_frame("street", frame_bytes("street.jpg"))
    page.set_viewport_size(PHONE)
    login(page, server)
    expect_frame(page, "front-door", door["frame_id"], labels(door))
    expect_frame(page, "street", street["frame_id"], labels(street))
    # One column of tiles, as wide as the screen allows; the navigation wraps, all of it shown.
    first, second = (tile(page, c).bounding_box() for c in ("front-door", "street"))
    assert first is not None and second is not None
    assert first["width"] > PHONE["width"] * 0.85 and second["y"] > first["y"] + first["height"]
    for name in VIEWS:
        expect(page.get_by_role("link", name=name)).to_be_in_viewport()
    screenshot(page, "phone")

    for name in VIEWS:
        page.get_by_role("link", name=name).click()
        view = page.locator(f"#view-{name.lower()} .view-content")
        expect(view.locator(".view-body > *").first).to_be_visible()
        expect(view).not_to_have_attribute("aria-busy", "true")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    page.get_by_role("link", name="Providers").click()
    page.get_by_role("button", name="Configure provider flaky").click()
    expect(page.locator("form.provider-form")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.get_by_role("link", name="Cameras").click()
    page.get_by_role("button", name="Open the latest frame of High street").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("figure.annotated img")).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
