"""Real servers and real WebSocket clients for the tests of `/api/v1/detections/ws`.

- `CrowdProvider`: a DeepStack-format provider that finds, in every frame, a person (0.9), a car
  (0.6, type `vehicle`) and a person (0.3), plus `extra` faint persons (0.2) when asked for big
  messages.
- `live_server`: the API on 127.0.0.1 served by uvicorn in a thread, with viewer and operator
  keys, the crowd provider as the default and two cameras, `gate` and `yard`.
- `Ws`: a `websockets` client with a timeout on every receive.
- `raw_upgrade`: a WebSocket handshake sent by hand over a TCP socket (a peer that then stays
  silent), and `read_frames` to see what the server sends it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from framewatch.app import create_app
from framewatch.cli.common import websocket_settings
from tests.api_fixtures import ADMIN_KEY, make_settings
from tests.queue.scenario import small_frame
from tests.support.servers import serve_app

WS_PATH = "/api/v1/detections/ws"
RECV_TIMEOUT = 30.0  # generous: the whole suite may run on a loaded 2-core machine
CAMERAS = ("gate", "yard")
SETUP_MESSAGES = 6

# No periodic job writes events (live messages) during a test.
QUIET: dict[str, Any] = {"provider_check_seconds": 3600, "stats_interval_seconds": 3600,
                         "cleanup_interval_seconds": 3600, "worker_poll_seconds": 0.05}
# What the crowd provider finds in every frame: (label, confidence).
FOUND = (("person", 0.9), ("car", 0.6), ("person", 0.3))


@dataclass
class CrowdProvider:
    extra: int = 0  # faint persons added to every answer (big messages)
    calls: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/vision/detection", self._detect, methods=["POST"])])

    async def _detect(self, request: Request) -> JSONResponse:
        await request.form()
        self.calls += 1
        found = [*FOUND, *[("person", 0.2)] * self.extra]
        predictions = [{"label": label, "confidence": confidence, "x_min": 2 + i % 40,
                        "y_min": 2, "x_max": 20 + i % 40, "y_max": 40}
                       for i, (label, confidence) in enumerate(found)]
        return JSONResponse({"success": True, "predictions": predictions, "duration": 0})


def provider_body(url: str) -> dict[str, Any]:
    return {"name": "crowd", "kind": "deepstack", "base_url": url, "max_retries": 0,
            "timeout_seconds": 5, "detection_types": ["person", "vehicle"],
            "min_confidence": 0.1, "is_default": True,
            "options": {"retry_backoff_seconds": 0}}


@contextmanager
def serve_tuned(app: Any, *, ping_seconds: float | None = None,
                send_buffer: int | None = None, prepared_frames: bool = True) -> Iterator[str]:
    """Like `tests.support.servers.serve_app`, with the WebSocket settings of `framewatch serve`
    (`websocket_settings` in framewatch/cli/common.py): framewatch's WebSocket protocol class, a
    keepalive ping every `ping_seconds` (a peer silent for as long is dropped), and no
    per-message deflate. Also
    `send_buffer`: a fixed kernel send buffer of that many bytes per connection (Linux copies it
    from the listening socket), so that a client that stops reading backs up into the server
    after kilobytes instead of the megabytes autotuning allows. `prepared_frames=False`: uvicorn's
    own protocol class instead, without the extension, as under another server (every message
    goes through ASGI sends).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ping = 20.0 if ping_seconds is None else ping_seconds  # uvicorn's default otherwise
    settings = websocket_settings(ping)
    if not prepared_frames:
        settings["ws"] = "websockets-sansio"
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def found(message: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """A detection message's detections as (label, confidence), strongest first."""
    return tuple(sorted(((d["label"], d["confidence"]) for d in message["detections"]),
                        key=lambda pair: -pair[1]))


def summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What each message says, in order: (kind, camera, frame, detections or event type)."""
    rows: list[tuple[Any, ...]] = []
    for message in messages:
        if message["type"] == "detection":
            rows.append(("detection", message["camera_id"], message["frame_id"], found(message)))
        else:
            assert message["type"] == "event", message
            event = message["event"]
            rows.append(("event", event["camera_id"], event["frame_id"], event["event_type"]))
    return rows


def assert_increasing(messages: list[dict[str, Any]]) -> list[int]:
    ids = [m["id"] for m in messages]
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {ids}"
    return ids


class Ws:
    """One WebSocket client; every receive waits at most `RECV_TIMEOUT` seconds."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.received = 0  # texts read

    async def send(self, body: dict[str, Any] | str) -> None:
        await self.connection.send(body if isinstance(body, str) else json.dumps(body))

    async def recv(self, within: float = RECV_TIMEOUT) -> dict[str, Any]:
        text = await asyncio.wait_for(self.connection.recv(), within)
        self.received += 1
        message: dict[str, Any] = json.loads(text)
        return message

    async def expect(self, kind: str, within: float = RECV_TIMEOUT) -> dict[str, Any]:
        message = await self.recv(within)
        assert message["type"] == kind, message
        return message

    async def request(self, body: dict[str, Any] | str, answer: str) -> dict[str, Any]:
        await self.send(body)
        return await self.expect(answer)

    async def subscribe(self, **filters: Any) -> dict[str, Any]:
        return await self.request({"type": "subscribe", **filters}, "subscribed")

    async def stats(self) -> dict[str, Any]:
        return await self.request({"type": "get_stats"}, "stats")

    async def until_published(self, target: int, within: float = 15.0) -> list[dict[str, Any]]:
        """Every message this client receives until its process has published `target` live
        messages in all (memory log only): `stats` answers come after the messages that were
        delivered before them, so nothing published up to then can still be on its way."""
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        while True:
            await self.send({"type": "get_stats"})
            while (message := await self.recv())["type"] != "stats":
                received.append(message)
            if message["published"] >= target:
                assert message["published"] == target, (message, received)
                return received
            assert time.monotonic() < deadline, f"{message['published']} of {target} published"
            await asyncio.sleep(0.02)

    async def until_connections(self, count: int, within: float = 2.0) -> None:
        """Until the server counts `count` connections (it registers and forgets them a
        moment after the handshake and the close)."""
        deadline = time.monotonic() + within
        while (stats := await self.stats())["connections"] != count:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.02)

    async def closed(self, within: float = RECV_TIMEOUT) -> tuple[int | None, list[str]]:
        """Read until the server closes the connection: (close code, texts read before)."""
        texts: list[str] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    texts.append(str(await self.connection.recv()))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), texts
        raise AssertionError("unreachable")


@dataclass
class LiveServer:
    base_url: str
    http: httpx.AsyncClient
    provider: CrowdProvider
    keys: dict[str, str] = field(default_factory=dict)
    # Numbers of the frames to send (each a different image); share it between instances.
    frame_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # Live messages the process will have published once the frames sent so far are processed.
    expected: int = 0

    def ws_url(self, **query: Any) -> str:
        base = self.base_url.replace("http://", "ws://", 1) + WS_PATH
        return f"{base}?{urlencode(query)}" if query else base

    @asynccontextmanager
    async def ws(self, role: str | None = "viewer", **options: Any) -> AsyncIterator[Ws]:
        """A client authenticated with `?token=` (role None: not authenticated)."""
        query = options.pop("query", {})
        if role is not None:
            query["token"] = self.keys[role]
        async with connect(self.ws_url(**query), open_timeout=5, close_timeout=2,
                           **options) as connection:
            yield Ws(connection)

    async def post_frame(self, camera_id: str, mode: str = "sync") -> dict[str, Any]:
        """A frame never sent before, to `camera_id`; the answer's body."""
        number = next(self.frame_numbers)
        response = await self.http.post(
            "/api/v1/detections/send-frame",
            files={"image": (f"f{number}.jpg", small_frame(number), "image/jpeg")},
            data={"camera_id": camera_id, "mode": mode},
            headers={"Authorization": f"Bearer {self.keys['operator']}"},
        )
        assert response.status_code == (202 if mode == "async" else 200), response.text
        self.expected += 2  # the frame's detections, and its `frame.processed` event
        answer: dict[str, Any] = response.json()
        return answer

    async def setup(self, provider_url: str) -> None:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for role in ("viewer", "operator"):
            response = await self.http.post("/api/v1/keys", json={"name": role, "role": role},
                                            headers=admin)
            assert response.status_code == 201, response.text
            self.keys[role] = response.json()["key"]
        self.keys["admin"] = ADMIN_KEY
        response = await self.http.post("/api/v1/providers", json=provider_body(provider_url),
                                        headers=admin)
        assert response.status_code == 201, response.text
        for camera_id in CAMERAS:
            response = await self.http.post("/api/v1/cameras", headers=admin,
                                            json={"id": camera_id, "name": camera_id.title()})
            assert response.status_code == 201, response.text
        # Setup's events (three keys with the admin's, the provider, two cameras) are live
        # messages too: wait until all of them are out.
        self.expected = SETUP_MESSAGES
        async with self.ws() as ws:
            await ws.until_published(self.expected)


@asynccontextmanager
async def live_server(tmp_path: Path, database_url: str, *, ping_seconds: float | None = None,
                      send_buffer: int | None = None, prepared_frames: bool = True,
                      **overrides: Any) -> AsyncIterator[LiveServer]:
    """The API served on 127.0.0.1 and set up for the live tests; `overrides` are settings."""
    provider = CrowdProvider()
    settings = make_settings(tmp_path, database_url, log_level="WARNING",
                             **{**QUIET, **overrides})
    app = create_app(settings)
    with serve_app(provider.app()) as provider_url, \
            serve_tuned(app, ping_seconds=ping_seconds, send_buffer=send_buffer,
                        prepared_frames=prepared_frames) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            server = LiveServer(base_url, http, provider)
            await server.setup(provider_url)
            yield server


async def live_server_setup(base_url: str, provider_url: str) -> dict[str, str]:
    """Set up a framewatch served elsewhere (a fresh database) like `live_server` does; its
    keys by role."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        server = LiveServer(base_url, http, CrowdProvider())
        await server.setup(provider_url)
        return server.keys


# A peer that completes the handshake by hand, then never answers ---------------------------

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def raw_upgrade(url: str) -> tuple[socket.socket, bytes]:
    """Open a WebSocket to `url` (ws://host:port/path?query) over a plain socket; returns the
    socket and whatever the server sent after its 101 answer."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    sock.sendall((f"GET {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed during the handshake: {answer!r}"
        answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), lines
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    assert headers.get("sec-websocket-accept") == accept, lines
    return sock, rest


def read_until_eof(sock: socket.socket, within: float) -> tuple[float, bytes]:
    """Read (never write) until the server closes: (seconds it took, bytes read)."""
    started = time.monotonic()
    data = b""
    sock.settimeout(0.2)
    while time.monotonic() - started < within:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"the server kept the silent peer for {within} s")
    return time.monotonic() - started, data


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server frames: (opcode, payload) each."""
    frames = []
    while data:
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            length, offset = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[offset:offset + length]))
        data = data[offset + length:]
    return frames
