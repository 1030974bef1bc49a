"""`GET http://127.0.0.1:<port>/status`: the agent's status as JSON.

A few lines of asyncio rather than uvicorn: the endpoint answers one read-only GET on
loopback, and uvicorn's server would take over the process's SIGINT/SIGTERM handling, which
belongs to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT_SECONDS = 5.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class StatusEndpoint:
    """Serves `status()` at /status (and /) until closed."""

    def __init__(self, status: Callable[[], dict[str, Any]], port: int) -> None:
        self.status = status
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/status"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, HOST, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS)
            status, body = self._respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, body = 400, {"error": "bad_request"}
        except ConnectionError:
            writer.close()
            return
        data = json.dumps(body, indent=2).encode() + b"\n"
        writer.write(
            f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[int, dict[str, Any]]:
        request_line = head[:MAX_REQUEST_HEAD].split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            return 400, {"error": "bad_request"}
        method, target = parts[0], parts[1].split("?", 1)[0]
        if target not in ("/", "/status"):
            return 404, {"error": "not_found", "detail": "the status is at /status"}
        if method != "GET":
            return 405, {"error": "method_not_allowed"}
        return 200, self.status()
