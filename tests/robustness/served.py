"""framewatch as deployed: `framewatch serve` processes on 127.0.0.1, for tests that talk to them
over real HTTP (schemathesis uses `requests`). A process of its own also keeps the server off the
test's interpreter lock, so schemathesis generates while the server answers.

`serve_framewatch` adds the fast fake DeepStack provider (in a thread of the test) as the default,
a camera `gate`, a viewer key and two frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from framewatch.core.config import Settings
from tests.api_fixtures import ADMIN_KEY, make_settings
from tests.queue.scenario import flaky_provider_body, small_frame
from tests.support.flaky_provider import FlakyProvider
from tests.support.processes import ProcessGroup, framewatch_env
from tests.support.servers import free_port, serve_app

# What every response must pass: no 5xx, a documented status, and the content type, headers and
# body the schema gives for that status.
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_headers_conformance, response_schema_conformance,
]


@dataclass
class Served:
    base_url: str
    keys: dict[str, str]
    key_ids: dict[str, int]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def serve_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path, database_url,
        # The fake provider listens on 127.0.0.1; providers anywhere else are refused when
        # saved, so that no generated URL makes a test wait on the network.
        provider_allowed_hosts="127.0.0.1", **overrides,
    )


def start_serve(processes: ProcessGroup, settings: Settings, name: str = "serve",
                **extra: object) -> str:
    """Start `framewatch serve` configured like `settings` (plus `extra` settings); its URL once
    `/healthz` answers."""
    port = free_port()
    processes.start(name, "serve", env=framewatch_env(settings, port=port, **extra))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        processes.check_running()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not answer /healthz within 60 s")
        time.sleep(0.1)


@contextmanager
def serve_framewatch(tmp_path: Path, database_url: str, **overrides: Any) -> Iterator[Served]:
    settings = serve_settings(tmp_path, database_url, **overrides)
    processes = ProcessGroup(tmp_path / "processes", framewatch_env(settings))
    try:
        with serve_app(FlakyProvider().app()) as provider_url:
            base_url = start_serve(processes, settings)
            yield _prepare(base_url, provider_url)
            processes.check_running()
    finally:
        processes.stop_all()


def _prepare(base_url: str, provider_url: str) -> Served:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=base_url, headers=admin, timeout=30) as client:
        answer = client.post("/api/v1/providers", json=flaky_provider_body(provider_url))
        assert answer.status_code == 201, answer.text
        answer = client.post("/api/v1/cameras", json={"id": "gate", "name": "Gate"})
        assert answer.status_code == 201, answer.text
        answer = client.post("/api/v1/keys", json={"name": "fuzz-viewer", "role": "viewer"})
        assert answer.status_code == 201, answer.text
        viewer = answer.json()
        # Something to find: a processed frame with a detection, and a queued one.
        for index, mode in enumerate(("sync", "async")):
            answer = client.post(
                "/api/v1/detections/send-frame", data={"camera_id": "gate", "mode": mode},
                files={"image": ("f.jpg", small_frame(index), "image/jpeg")},
            )
            assert answer.status_code in (200, 202), answer.text
        keys = client.get("/api/v1/keys").json()
    admin_id = next(k["id"] for k in keys if k["role"] == "admin")
    return Served(base_url, {"admin": ADMIN_KEY, "viewer": viewer["key"]},
                  {"admin": admin_id, "viewer": viewer["id"]})
