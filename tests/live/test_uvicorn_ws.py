"""framewatch's uvicorn WebSocket protocol (framewatch/live/uvicorn_ws.py): frames encoded once
and written straight to the socket, beside the ordinary ASGI sends. Served for real by uvicorn
with `framewatch serve`'s settings, read by a real `websockets` client or a plain socket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from framewatch.live.hub import PREPARED_FRAMES, text_frame
from tests.live.clients import raw_upgrade, read_frames, serve_tuned

# Texts of the three payload lengths a frame header can carry: 7 bits, 16 bits, 64 bits.
SHORT, MEDIUM, LONG = "é" * 10, "m" * 300, "L" * 70_000


def app_with(endpoint: Any) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


async def wait_for(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_prepared_frames_arrive_in_order_with_the_asgi_sends_and_stop_at_close() -> None:
    outcomes: dict[str, Any] = {}

    async def endpoint(websocket: WebSocket) -> None:
        write = websocket.scope["extensions"][PREPARED_FRAMES]["write"]
        outcomes["before accept"] = write(text_frame("never"))
        await websocket.accept()
        outcomes["written"] = [write(text_frame(text)) for text in (SHORT, MEDIUM, LONG)]
        await websocket.send_text("through ASGI")
        outcomes["written"].append(write(text_frame("after")))
        await websocket.receive_text()  # the client has read everything
        await websocket.close(code=4000, reason="done")
        outcomes["after close"] = write(text_frame("too late"))

    with serve_tuned(app_with(endpoint)) as base_url:
        async with connect(base_url.replace("http", "ws") + "/ws", compression=None) as client:
            texts = [await asyncio.wait_for(client.recv(), 5) for _ in range(5)]
            await client.send("read")
            await asyncio.wait_for(client.wait_closed(), 5)
            assert (client.close_code, client.close_reason) == (4000, "done")
            await wait_for(lambda: "after close" in outcomes)
    assert texts == [SHORT, MEDIUM, LONG, "through ASGI", "after"]
    assert outcomes == {"before accept": False, "written": [True] * 4, "after close": False}


async def test_a_client_that_stops_reading_refuses_writes_until_it_reads_again() -> None:
    state: dict[str, Any] = {}
    chunk = "x" * 10_000

    async def endpoint(websocket: WebSocket) -> None:
        write = websocket.scope["extensions"][PREPARED_FRAMES]["write"]
        await websocket.accept()
        written = 0
        while written < 10_000 and write(text_frame(f"{written:05d}{chunk}")):
            written += 1
        state["refused after"] = written
        await websocket.receive_text()  # once the client has read what was written
        state["again"] = write(text_frame("again"))
        await websocket.receive_text()

    with serve_tuned(app_with(endpoint), send_buffer=16384) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        sock, rest = raw_upgrade(f"ws://127.0.0.1:{port}/ws")
        await wait_for(lambda: "refused after" in state)
        written = state["refused after"]
        # The kernel's buffers and uvicorn's high-water mark hold some; then writes stop.
        assert 2 < written < 10_000, written
        data = rest
        sock.settimeout(5)
        expected_bytes = written * (len(text_frame(f"00000{chunk}")))
        while len(data) < expected_bytes:
            data += sock.recv(1 << 20)
        frames = read_frames(data)
        assert [payload.decode()[:5] for _, payload in frames] == [
            f"{index:05d}" for index in range(written)]
        assert all(opcode == 1 and payload.endswith(chunk.encode()) for opcode, payload in frames)
        sock.sendall(masked_text(b"read"))
        await wait_for(lambda: "again" in state)
        assert state["again"] is True
        data = b""
        while not data.endswith(b"again"):
            data += sock.recv(4096)
        assert read_frames(data) == [(1, b"again")]
        sock.sendall(masked_text(b"bye"))
        sock.close()


def masked_text(payload: bytes) -> bytes:
    """A client's text frame (clients must mask; a zero mask leaves the payload as it is)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_a_text_frame_is_what_websockets_would_send() -> None:
    for text in (SHORT, MEDIUM, LONG):
        frames = read_frames(text_frame(text))
        assert frames == [(1, text.encode())]
    assert text_frame("hi") == b"\x81\x02hi"
