"""Providers: the list with breaker states, the Test button, the configuration form."""

from __future__ import annotations

from typing import Any

from tests.dashboard.conftest import Served, expect, login, screenshot
from tests.support.servers import free_port


def test_testing_and_configuring_a_provider(page: Any, server: Served) -> None:
    # A provider nobody listens for: its test fails, and says why.
    server.call("POST", "/api/v1/providers", expect=201, json={
        "name": "offline-box", "kind": "deepstack", "max_retries": 0, "timeout_seconds": 2,
        "base_url": f"http://127.0.0.1:{free_port()}", "detection_types": ["person"]})
    login(page, server)
    page.get_by_role("link", name="Providers").click()

    flaky = page.locator("tr[data-provider='flaky']")
    expect(flaky).to_contain_text("deepstack")
    expect(flaky).to_contain_text("enabled, default")
    expect(flaky.locator(".badge")).to_have_attribute("data-breaker", "closed")

    flaky.get_by_role("button", name="Test provider flaky").click()
    report = page.locator("section.report")
    expect(report).to_have_attribute("data-outcome", "success")
    expect(report.get_by_role("heading")).to_have_text("Test of flaky: working")
    expect(report.locator("ul.found li")).to_have_text(["person 90%"])

    offline = page.locator("tr[data-provider='offline-box']")
    offline.get_by_role("button", name="Test provider offline-box").click()
    expect(report).to_have_attribute("data-outcome", "failure")
    expect(report.locator(".error-code")).to_have_text("provider_unavailable")

    # Change the fake provider's minimum confidence.
    flaky.get_by_role("button", name="Configure provider flaky").click()
    form = page.locator("form.provider-form")
    expect(form.get_by_role("heading", name="Configure flaky")).to_be_focused()
    form.get_by_label("Minimum confidence").fill("0.25")
    form.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved provider flaky.")).to_be_visible()
    expect(flaky.locator("td").nth(3)).to_have_text("0.25")
    assert server.call("GET", "/api/v1/detections/provider/config")["min_confidence"] == 0.25

    # The API's error, as it said it.
    flaky.get_by_role("button", name="Configure provider flaky").click()
    form.get_by_label("Base URL").fill("ftp://example.org/")
    form.get_by_role("button", name="Save").click()
    expect(form.locator(".error-code")).to_have_text("validation_error")
    expect(form.locator(".error-detail")).to_contain_text("base_url")

    # Unsaved settings can be tested too.
    form.get_by_label("Base URL").fill(server.call("GET", "/api/v1/providers/2")["base_url"])
    form.get_by_role("button", name="Test these settings").click()
    expect(report).to_have_attribute("data-outcome", "success")
    expect(report.get_by_role("heading")).to_have_text("Test of flaky (unsaved): working")
    expect(report.locator("ul.found li")).to_have_text(["person 90%"])
    expect(form.locator(".form-problem")).to_be_empty()
    screenshot(page, "providers", full_page=True)
