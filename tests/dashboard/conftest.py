"""The dashboard in a real browser against the real app.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python package; no
browser is downloaded. Without `/usr/bin/chromium` (or the `playwright` package) these tests skip
saying so — unless `FRAMEWATCH_TEST_BROWSER` is set (`.ci/run` sets it), and then they fail.

Each test gets its own app on 127.0.0.1 (its own copy of a SQLite database prepared once, with a
fast fake DeepStack provider as the default) and its own browser context; the browser is shared
by the package.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from framewatch.app import create_app
from framewatch.core.config import Settings
from tests.api_fixtures import ADMIN_KEY, make_settings
from tests.queue.scenario import flaky_provider_body
from tests.support.flaky_provider import FlakyProvider
from tests.support.servers import free_port, serve_app

try:  # without it, the `browser` fixture skips (or fails) every test, saying why
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover
    expect: Any = None

BROWSER_ENV = "FRAMEWATCH_TEST_BROWSER"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 860}
# Every wait in these tests is bounded by this (milliseconds): generous, for a loaded machine
# (the built-in detector takes a second or more per photograph there).
WAIT_MS = 30_000
BUILTIN_PROVIDER_ID = 1  # made by the app's first start


def browser_or_skip() -> None:
    """Skip (or fail, when FRAMEWATCH_TEST_BROWSER is set) without a browser to drive."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is missing (pip install -e '.[dev]')")
    if not problems:
        return
    message = "; ".join(problems)
    if os.environ.get(BROWSER_ENV):
        pytest.fail(f"{BROWSER_ENV} is set but {message}", pytrace=False)
    pytest.skip(f"browser tests need Chromium and Playwright: {message}; "
                f"set {BROWSER_ENV}=1 to make this a failure (`.ci/run` does)")


@pytest.fixture(scope="package")
def browser(sqlite_template: Path) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop running in this thread until it stops: anything
    # that needs asyncio.run here (the migrated SQLite template) must be ready before.
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="package")
def fake_provider() -> Iterator[str]:
    """A DeepStack-compatible provider that finds one person (10,10)-(30,40) px in any frame."""
    with serve_app(FlakyProvider().app()) as url:
        yield url


class Served:
    """The app on a fixed port, which a test can stop and start again (same database)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack: ExitStack | None = None
        self.keys = {"admin": ADMIN_KEY}

    def start(self) -> None:
        stack = ExitStack()
        stack.enter_context(serve_app(create_app(self.settings), port=self.port))
        self._stack = stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def client(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {self.keys[role]}"})

    def call(self, method: str, path: str, *, expect: int = 200, role: str = "admin",
             **kwargs: Any) -> Any:
        with self.client(role) as client:
            response = client.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    def add_camera(self, camera_id: str, name: str, **fields: Any) -> None:
        self.call("POST", "/api/v1/cameras", json={"id": camera_id, "name": name, **fields},
                  expect=201)

    def enable_builtin(self) -> None:
        """The built-in detector (disabled in the template): for real faces and identities."""
        self.call("PATCH", f"/api/v1/providers/{BUILTIN_PROVIDER_ID}", json={"enabled": True})

    def send_frame(self, camera_id: str, image: bytes, name: str = "frame.jpg") -> Any:
        return self.call("POST", "/api/v1/detections/send-frame",
                         files={"image": (name, image, "image/jpeg")},
                         data={"camera_id": camera_id})


@dataclass(frozen=True)
class Template:
    database: Path
    viewer_key: str


@pytest.fixture(scope="package")
def dashboard_template(sqlite_template: Path, fake_provider: str,
                       tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A database made once through the API: the fake provider as the default, the built-in
    one disabled (so that an app starting on a copy does not load the detector's weights), and
    a viewer key. Tests that need the built-in detector enable it."""
    directory = tmp_path_factory.mktemp("dashboard-template")
    database = directory / "framewatch.db"
    shutil.copy(sqlite_template, database)
    served = Served(make_settings(directory, f"sqlite+aiosqlite:///{database}"))
    served.start()
    try:
        served.call("POST", "/api/v1/providers", json=flaky_provider_body(fake_provider),
                    expect=201)
        served.call("PATCH", f"/api/v1/providers/{BUILTIN_PROVIDER_ID}",
                    json={"enabled": False})
        viewer = served.call("POST", "/api/v1/keys", json={"name": "viewer", "role": "viewer"},
                             expect=201)
    finally:
        served.stop()
    return Template(database, viewer["key"])


@pytest.fixture
def server(tmp_path: Path, dashboard_template: Template) -> Iterator[Served]:
    """A fresh app on its own copy of the template database."""
    for suffix in ("", "-wal", "-shm"):
        source = dashboard_template.database.with_name(f"framewatch.db{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / source.name)
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'framewatch.db'}",
                             stats_interval_seconds=1.0, stats_ttl_seconds=1.0,
                             camera_state_ttl_seconds=1.0)
    served = Served(settings)
    served.keys["viewer"] = dashboard_template.viewer_key
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def page(browser: Any, server: Served) -> Iterator[Any]:
    """A fresh browser context and page; fails the test on a script error or a CSP violation.

    It needs `server` so that it is closed first: a server stopped while the page still holds
    its WebSocket waits for that connection until its shutdown times out."""
    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC",
                                  reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: problems.append(f"console: {message.text}")
            if message.type == "error" and _unexpected(message.text) else None)
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def _unexpected(text: str) -> bool:
    """Console errors that are a bug: not the ones Chromium logs for an expected HTTP error
    status or a WebSocket dropped on purpose (which the page handles and shows)."""
    expected = ("Failed to load resource", "WebSocket connection to", "ERR_CONNECTION_REFUSED")
    return not any(part in text for part in expected)


def label_of(detection: dict[str, Any]) -> str:
    """A detection's label as the dashboard writes it (js/dom.js `detectionLabel`): type,
    confidence in whole percent (rounded half up, like `toFixed`), the person's name if known."""
    parts = [detection["type"], f"{math.floor(detection['confidence'] * 100 + 0.5)}%"]
    person = detection.get("person") or {}
    if person.get("name"):
        parts.append(person["name"])
    elif detection.get("subject"):
        parts.append(detection["subject"])
    return " ".join(parts)


def wait_until(page: Any, condition: Any, what: str, within_ms: int = 30_000) -> None:
    """Polls `condition` while Playwright runs its handlers (route handlers run only inside
    Playwright calls, never during a plain sleep)."""
    waited = 0
    while not condition():
        assert waited < within_ms, f"timed out waiting for {what}"
        page.wait_for_timeout(50)
        waited += 50


def login(page: Any, server: Served, role: str = "admin") -> None:
    page.goto(server.url + "/")
    page.get_by_label("API key").fill(server.keys[role])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    """docs/screenshots/<name>.png, of the viewport or the whole page (the names are fixed:
    README.md and docs/dashboard.md show them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled", caret="hide",
                    full_page=full_page)
