"""uvicorn's WebSocket protocol (websockets, sans-I/O) with one ASGI extension: a text frame
encoded once, written straight to a connection's socket.

Why: every live message goes to every subscribed client. Through ASGI, each send is a task
woken up and four layers of code (the client's send loop, Starlette's `WebSocket`,
uvicorn's `send`, websockets' framing) before the one socket write it comes down to; with
1,000 clients at 20 messages a second that cost about as much CPU as the writes themselves
(the fan-out went from 22 to 13 µs a message without them, docs/performance.md). With the
extension, `Hub.deliver` encodes each distinct view of a message into a frame once and writes
it to each client whose queue is empty: one `transport.write` per client, nothing else.

`framewatch serve` runs uvicorn with this protocol class (`ws=FramewatchWebSocketProtocol`). It
offers `scope["extensions"][PREPARED_FRAMES] = {"write": write}`; `write(frame)` returns False
and writes nothing when the connection cannot take a frame now — not accepted yet, closing or
closed, an extension such as per-message deflate negotiated, or its write buffer above the
high-water mark — and the caller then sends the normal ASGI way, which waits for the buffer to
drain. Under another server the extension is absent and everything goes the ASGI way.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from framewatch.live.hub import PREPARED_FRAMES


class FramewatchWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # `scope` exists once the request has been accepted for upgrading (a refused one
        # was answered above and has none); the application's task has not run yet.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][PREPARED_FRAMES] = {"write": self.write_prepared}

    def write_prepared(self, frame: bytes) -> bool:
        """Write `frame` (a whole frame: `framewatch.live.hub.text_frame`) now if the connection
        can take it; else False."""
        if (self.close_sent or self.disconnected or self.conn.state is not State.OPEN
                or self.conn.extensions or self.conn.expect_continuation_frame
                or not self.writable.is_set() or self.transport.is_closing()):
            return False
        self.transport.write(frame)
        return True
