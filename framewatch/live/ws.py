"""`GET /api/v1/detections/ws`: processed frames and events, live, filtered on the server.

Protocol (JSON text frames; docs/live.md has the full description):
- the key comes as `?token=` or as the first message `{"type": "auth", "token": "..."}`;
- client → server: `subscribe` (filters, optional `last_event_id` to resume), `unsubscribe`,
  `ping`, `get_stats`;
- server → client: `subscribed`, `unsubscribed`, `detection`, `event`, `resync` (messages were
  missed: reload from the REST API), `pong`, `stats`, `error` (the connection stays open).
Every `detection` and `event` message carries an `id` that only grows. A client whose buffer
overflows is closed with code 4008; one that does not answer pings is dropped by the server.
When the server shuts down (SIGTERM) every connection is closed with code 1012 ("service
restart") and a reason: the client reconnects, to another instance behind the load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framewatch.auth.dependencies import audit_refusal, authenticate_key
from framewatch.auth.permissions import Permission
from framewatch.auth.service import Principal
from framewatch.auth.wstoken import looks_like_ws_token, read_ws_token
from framewatch.events.service import EventType
from framewatch.live.hub import (
    PREPARED_FRAMES,
    SLOW_CLIENT_CLOSE_CODE,
    Client,
    Offered,
    Subscription,
)
from framewatch.runtime import Runtime

router = APIRouter()
log = logging.getLogger(__name__)

AUTH_TIMEOUT_SECONDS = 10
UNAUTHORIZED_CLOSE_CODE = 4401
FORBIDDEN_CLOSE_CODE = 4403
SHUTDOWN_CLOSE_CODE = 1012
SHUTDOWN_REASON = "server shutting down: reconnect"
MAX_MESSAGE_CHARS = 16_384
MAX_FILTER_ITEMS = 1000


class SubscribeMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"]
    camera_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=MAX_FILTER_ITEMS)
    detection_types: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=MAX_FILTER_ITEMS)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    person_ids: list[int] | None = Field(default=None, max_length=MAX_FILTER_ITEMS)
    detections: bool = True
    events: bool = False
    last_event_id: int | None = Field(default=None, ge=0)


class UnsubscribeMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["unsubscribe"]
    subscription_id: str | None = Field(default=None, description="None: every subscription.")


@router.websocket("/api/v1/detections/ws")
async def detections_ws(
    websocket: WebSocket,
    token: Annotated[str | None, Query(max_length=8192)] = None,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    principal = await _authenticate(websocket, runtime, token)
    if principal is None:
        return
    client = Client(principal=principal.actor, buffer=runtime.settings.ws_buffer_messages,
                    camera_scope=principal.camera_scope,
                    may_read_events=principal.allows(Permission.EVENTS_READ))
    # Under `framewatch serve`, live messages are written to the socket from the hub itself
    # while this connection keeps up (framewatch/live/uvicorn_ws.py).
    prepared_frames = (websocket.scope.get("extensions") or {}).get(PREPARED_FRAMES)
    if prepared_frames is not None:
        client.write_frame = prepared_frames["write"]
    hub = runtime.live.hub
    hub.add(client)
    session = _Session(websocket, runtime, client, last_event_id)
    sender = asyncio.create_task(session.send_forever())
    receiver = asyncio.create_task(session.receive_forever())
    overflow = asyncio.create_task(client.overflowed.wait())
    stopping = asyncio.create_task(client.stopping.wait())
    try:
        await asyncio.wait({sender, receiver, overflow, stopping},
                           return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            hub.remove(client)
            await _close(websocket, SHUTDOWN_CLOSE_CODE, SHUTDOWN_REASON)
        elif overflow.done():
            # Let go of it now: the close frame waits until the client reads again (if ever).
            hub.remove(client)
            await _close(websocket, SLOW_CLIENT_CLOSE_CODE,
                         f"too slow: more than {client.buffer} messages behind")
    finally:
        hub.remove(client)
        for task in (sender, receiver, overflow, stopping):
            task.cancel()
        outcomes = await asyncio.gather(sender, receiver, overflow, stopping,
                                        return_exceptions=True)
        for outcome in outcomes[:2]:
            # A peer that vanished mid-send is normal; anything else is worth a log line.
            if isinstance(outcome, Exception) and not isinstance(
                    outcome, WebSocketDisconnect | RuntimeError | OSError):
                log.warning("WebSocket of %s ended with %s: %s", client.principal,
                            type(outcome).__name__, outcome)


async def _authenticate(
    websocket: WebSocket, runtime: Runtime, token: str | None
) -> Principal | None:
    if token is None:
        try:
            first = await asyncio.wait_for(websocket.receive_text(), AUTH_TIMEOUT_SECONDS)
            message = json.loads(first)
            token = message.get("token") if message.get("type") == "auth" else None
        except (TimeoutError, ValueError, AttributeError, KeyError, WebSocketDisconnect):
            token = None
    principal = None
    if isinstance(token, str) and 0 < len(token) <= 8192:
        if looks_like_ws_token(token):
            principal = await read_ws_token(runtime, token)
        else:
            principal = (await authenticate_key(runtime, token)).principal
    address = websocket.client.host if websocket.client else "unknown"
    if principal is None:
        await audit_refusal(runtime, EventType.AUTH_FAILED,
                            f"WebSocket authentication failed from {address}",
                            {"address": address, "path": websocket.url.path,
                             "reason": "missing" if not token else "invalid",
                             "outcome": "refused"})
        await _refuse(websocket, UNAUTHORIZED_CLOSE_CODE, "unauthorized",
                      "an API key or WebSocket token is required: ?token=... or "
                      "{\"type\": \"auth\", \"token\": ...} first")
        return None
    if not principal.allows(Permission.DETECTIONS_READ):
        await audit_refusal(runtime, EventType.AUTH_DENIED,
                            f"key {principal.name!r} lacks detections:read for the WebSocket",
                            {"address": address, "path": websocket.url.path,
                             "key_name": principal.name, "outcome": "denied"})
        await _refuse(websocket, FORBIDDEN_CLOSE_CODE, "forbidden",
                      "this needs the detections:read permission")
        return None
    return principal


async def _refuse(websocket: WebSocket, code: int, error: str, detail: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "error": error, "detail": detail})
    await _close(websocket, code, detail[:120])


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):  # the peer may be gone already
        await websocket.close(code=code, reason=reason)


class _Session:
    """One connection's conversation: its messages in, the hub's messages out."""

    def __init__(self, websocket: WebSocket, runtime: Runtime, client: Client,
                 resume_from: int | None) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.client = client
        self.resume_from = resume_from

    async def send_forever(self) -> None:
        hub = self.runtime.live.hub
        while True:
            text = await self.client.outbox.get()
            self.client.sending = True  # the hub queues behind this one meanwhile
            try:
                await self.websocket.send_text(text)
            finally:
                self.client.sending = False
            self.client.sent += 1
            hub.messages_sent += 1

    async def receive_forever(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                await self.error("binary messages are not part of the protocol: send JSON text")
            else:
                await self.handle(text)

    async def handle(self, text: str) -> None:
        if len(text) > MAX_MESSAGE_CHARS:
            return await self.error(f"message longer than {MAX_MESSAGE_CHARS} characters")
        try:
            message = json.loads(text)
        except ValueError:
            return await self.error("not JSON")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await self.reply({"type": "pong"})
        elif kind == "get_stats":
            await self.reply({"type": "stats", **self.runtime.live.stats(),
                              "client": {"sent": self.client.sent,
                                         "queued": self.client.outbox.qsize(),
                                         "subscriptions": len(self.client.subscriptions)}})
        elif kind == "subscribe":
            await self.subscribe(message)
        elif kind == "unsubscribe":
            await self.unsubscribe(message)
        elif kind == "auth":
            await self.error("already authenticated")
        else:
            await self.error("unknown message type: expected subscribe, unsubscribe, ping or "
                             "get_stats")

    async def subscribe(self, message: dict[str, Any]) -> None:
        try:
            parsed = SubscribeMessage.model_validate(message)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors(include_url=False))
            return await self.error(f"invalid subscribe: {problems}")
        if parsed.events and not self.client.may_read_events:
            return await self.error("events need the events:read permission")
        subscription = Subscription(
            id=self.runtime.live.hub.next_subscription_id(),
            camera_ids=_set(parsed.camera_ids),
            detection_types=_set([t.lower() for t in parsed.detection_types]
                                 if parsed.detection_types is not None else None),
            min_confidence=parsed.min_confidence,
            person_ids=_set(parsed.person_ids),
            detections=parsed.detections,
            events=parsed.events,
        )
        resume_from = parsed.last_event_id
        if resume_from is None and not self.client.subscriptions:
            resume_from = self.resume_from
        # Hold live messages while the missed ones are fetched, so that order is kept.
        self.client.held = [] if resume_from is not None else None
        self.client.subscriptions[subscription.id] = subscription
        await self.reply({"type": "subscribed", "subscription_id": subscription.id,
                          "filters": subscription.describe(),
                          "last_event_id": await self.runtime.live.log.last_id()})
        if resume_from is not None:
            await self.replay(resume_from)

    async def replay(self, after_id: int) -> None:
        held, newest = self.client.held or [], after_id
        try:
            replay = await self.runtime.live.replay(after_id)
        except Exception:  # the log's backend is down: the client must reload
            replay = None
        if replay is None or not replay.complete:
            await self.reply({"type": "resync", "after_id": after_id,
                              "detail": "some messages since last_event_id are no longer "
                                        "kept: reload the current state from the REST API"})
        for message in replay.messages if replay is not None else []:
            text = self.client.render(message)
            if text is not None:  # more than the buffer holds: wait for the client to read
                await self.client.outbox.put(text)
            newest = max(newest, message.id)
        held = self.client.held or held
        self.client.held = None
        # A message read from the log for the replay may still reach the hub live after it.
        self.client.replayed_up_to = max(self.client.replayed_up_to, newest)
        for message in held:
            if message.id > newest and self.client.offer(message) is Offered.WRITTEN:
                self.runtime.live.hub.messages_sent += 1

    async def unsubscribe(self, message: dict[str, Any]) -> None:
        try:
            parsed = UnsubscribeMessage.model_validate(message)
        except ValidationError:
            return await self.error("invalid unsubscribe: give a subscription_id or nothing")
        if parsed.subscription_id is None:
            removed = sorted(self.client.subscriptions)
            self.client.subscriptions.clear()
        elif self.client.subscriptions.pop(parsed.subscription_id, None) is not None:
            removed = [parsed.subscription_id]
        else:
            return await self.error(f"no subscription {parsed.subscription_id!r}")
        await self.reply({"type": "unsubscribed", "subscription_ids": removed})

    async def reply(self, body: dict[str, Any]) -> None:
        self._queue(json.dumps(body, default=str))

    async def error(self, detail: str) -> None:
        await self.reply({"type": "error", "error": "bad_message", "detail": detail})

    def _queue(self, text: str | None) -> None:
        if text is None:
            return
        try:
            self.client.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.client.overflowed.set()


def _set(values: list[Any] | None) -> frozenset[Any] | None:
    return frozenset(values) if values is not None else None
