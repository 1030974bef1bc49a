"""The dashboard's own files: served publicly under the strict content security policy, no API
route, nothing in them that the policy would refuse or that reaches another origin. No browser
needed."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from framewatch.app import create_app
from framewatch.auth.catalogue import endpoint_permissions
from framewatch.core.config import Settings
from framewatch.core.headers import STRICT_CSP
from framewatch.dashboard import STATIC_DIR
from tests.dashboard.conftest import Served

FILES = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript",
         ".svg": "image/svg+xml"}


def test_the_page_and_every_file_are_served_without_a_key(server: Served) -> None:
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == STRICT_CSP
        assert page.headers["cache-control"] == "no-cache"
        assert client.head("/").status_code == 200
        assert {p.suffix for p in FILES} == set(TYPES)
        for path in FILES:
            url = "/dashboard/" + path.relative_to(STATIC_DIR).as_posix()
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-type"].startswith(TYPES[path.suffix]), url
            assert response.headers["content-security-policy"] == STRICT_CSP, url
            assert response.content == path.read_bytes()
            again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
            assert again.status_code == 304, url


def test_nothing_else_is_served_there(server: Served) -> None:
    with httpx.Client(base_url=server.url) as client:
        missing = client.get("/dashboard/js/nothing.js")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        assert client.get("/dashboard/../pyproject.toml").status_code == 404
        assert client.get("/dashboard/%2e%2e/router.py").status_code == 404
        assert client.post("/", json={}).status_code == 405
        # The API is untouched: it still wants a key.
        assert client.get("/api/v1/cameras").status_code == 401


def test_they_are_not_api_routes() -> None:
    app = create_app(Settings(data_dir=Path("/nonexistent")))
    paths = set(app.openapi()["paths"])
    assert not {p for p in paths if p == "/" or p.startswith("/dashboard")}
    assert not [row for row in endpoint_permissions(app)
                if row[1] == "/" or row[1].startswith("/dashboard")]


def test_the_code_keeps_to_the_content_security_policy() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    # Scripts and styles from files only: no inline script, style element or style attribute.
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="module" src="/dashboard/js/main.js">']
    assert "<style" not in html and " style=" not in html
    for path in STATIC_DIR.rglob("*.js"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 400, f"{path.name}: keep each module small"
        code = "\n".join(line for line in lines if not line.lstrip().startswith("//"))
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                          "eval(", "new Function", 'setAttribute("style"', "localStorage"):
            assert forbidden not in code, f"{path.name} uses {forbidden}"
        # No other origin: no CDN, no absolute URL but the SVG namespace (and a placeholder).
        urls = set(re.findall(r"https?://[^\s\"'`]+", code)) - {
            "http://www.w3.org/2000/svg", "http://host:port"}
        assert not urls, f"{path.name}: {urls}"
        for imported in re.findall(r'from "(\./[a-z]+\.js)"', code):
            assert (path.parent / imported).is_file(), f"{path.name} imports {imported}"
