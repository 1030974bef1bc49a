"""`GET /api/v1/detections/ws` on one API process (SQLite, the in-memory live log), served for
real by uvicorn on 127.0.0.1 and talked to by real `websockets` clients; frames go in over HTTP
to the crowd provider, which finds a person (0.9), a car (0.6, `vehicle`) and a person (0.3) in
each. Every receive has a timeout; "exactly these messages" is checked with `until_published`,
which reads up to a `stats` answer sent after the last message the process published."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import sqlite_copy
from tests.live.clients import (
    LiveServer,
    assert_increasing,
    live_server,
    raw_upgrade,
    read_frames,
    read_until_eof,
    summary,
)

ALL = (("person", 0.9), ("car", 0.6), ("person", 0.3))


@pytest.fixture
async def server(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str
                 ) -> AsyncIterator[LiveServer]:
    """The API served with `framewatch serve`'s WebSocket protocol; parametrized with False,
    with uvicorn's own (no prepared frames: every message goes through ASGI sends)."""
    prepared_frames = getattr(request, "param", True)
    async with live_server(tmp_path, sqlite_url, prepared_frames=prepared_frames) as running:
        yield running


BOTH_WAYS = pytest.mark.parametrize("server", [True, False], indirect=True,
                                    ids=["prepared frames", "ASGI sends only"])


# Authentication -------------------------------------------------------------------------------

async def test_token_in_the_query_or_in_the_first_message(server: LiveServer) -> None:
    async with server.ws("viewer") as ws:
        subscribed = await ws.subscribe(camera_ids=["gate"])
        assert subscribed["subscription_id"].startswith("s")
        assert subscribed["filters"]["camera_ids"] == ["gate"]
    async with server.ws(None) as ws:
        await ws.send({"type": "auth", "token": server.keys["operator"]})
        assert await ws.request({"type": "ping"}, "pong") == {"type": "pong"}
        # A second auth is refused; the connection stays.
        error = await ws.request({"type": "auth", "token": server.keys["admin"]}, "error")
        assert error == {"type": "error", "error": "bad_message",
                         "detail": "already authenticated"}
        assert (await ws.stats())["client"] == {"sent": 2, "queued": 0, "subscriptions": 0}
        await ws.until_connections(1)  # the first client, which closed, is forgotten
        await ws.subscribe()
        frame = await server.post_frame("gate")
        assert (await ws.expect("detection"))["frame_id"] == frame["frame_id"]


REFUSED: dict[str, tuple[dict[str, str], dict[str, Any] | str | bytes | None]] = {
    # case: (query, first message)
    "no token, another message first": ({}, {"type": "subscribe"}),
    "wrong token in the query": ({"token": "fw_wrong_key_0123456789"}, None),
    "wrong token in the auth message": ({}, {"type": "auth", "token": "fw_nope_123456"}),
    "auth without a token": ({}, {"type": "auth"}),
    "first message not JSON": ({}, "hello"),
    "first message binary": ({}, json.dumps({"type": "auth", "token": "x"}).encode()),
}


async def test_without_a_valid_key_an_error_then_close_4401(server: LiveServer) -> None:
    for case, (query, first) in REFUSED.items():
        async with server.ws(None, query=query) as ws:
            if isinstance(first, bytes):
                await ws.connection.send(first)
            elif first is not None:
                await ws.send(first)
            error = await ws.expect("error")
            assert error["error"] == "unauthorized" and "?token=" in error["detail"], case
            assert await ws.closed() == (4401, []), case
            reason = ws.connection.close_reason
            assert reason is not None and "API key" in reason, case
    # The server took no account of the refused connections.
    async with server.ws() as ws:
        assert (await ws.stats())["connections"] == 1


# Subscriptions and server-side filters -------------------------------------------------------

@BOTH_WAYS
async def test_filters_are_applied_on_the_server(server: LiveServer) -> None:
    filters: dict[str, dict[str, Any]] = {
        "gate": {"camera_ids": ["gate"]},
        "vehicles": {"detection_types": ["Vehicle"]},
        "confident": {"min_confidence": 0.5},
        "yard events": {"camera_ids": ["yard"], "detections": False, "events": True},
        "gate persons and events": {"camera_ids": ["gate"], "detection_types": ["person"],
                                    "events": True},
    }
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(server.ws()) for name in filters}
        for name, ws in clients.items():
            subscribed = await ws.subscribe(**filters[name])
            assert subscribed["filters"]["events"] == filters[name].get("events", False)
        assert (await ws.stats())["subscriptions"] == 5
        frames = []
        for camera, mode in [("gate", "sync"), ("yard", "sync"), ("gate", "async"),
                             ("yard", "async"), ("gate", "sync")]:
            answer = await server.post_frame(camera, mode)
            frames.append((camera, answer["frame_id"]))
        got = {name: await ws.until_published(server.expected) for name, ws in clients.items()}

    for messages in got.values():
        assert_increasing(messages)
    gate = [f for f in frames if f[0] == "gate"]
    yard = [f for f in frames if f[0] == "yard"]

    def rows(kind: str, chosen: list[tuple[str, int]], what: Any) -> set[tuple[Any, ...]]:
        return {(kind, camera, frame_id, what) for camera, frame_id in chosen}

    assert len(got["gate"]) == 3
    assert set(summary(got["gate"])) == rows("detection", gate, ALL)
    assert len(got["vehicles"]) == 5
    assert set(summary(got["vehicles"])) == rows("detection", frames, (("car", 0.6),))
    assert all(d["type"] == "vehicle" for m in got["vehicles"] for d in m["detections"])
    assert set(summary(got["confident"])) == rows("detection", frames, ALL[:2])
    assert len(got["yard events"]) == 2
    assert set(summary(got["yard events"])) == rows("event", yard, "frame.processed")
    assert all(m["event"]["detection_types"] == ["person", "vehicle"]
               for m in got["yard events"])
    both = summary(got["gate persons and events"])
    assert len(both) == 6
    assert set(both) == (rows("detection", gate, (("person", 0.9), ("person", 0.3)))
                         | rows("event", gate, "frame.processed"))
    # The frame's detection message comes before its event.
    for camera, frame_id in gate:
        kinds = [row[0] for row in both if row[2] == frame_id]
        assert kinds == ["detection", "event"], (camera, frame_id, both)


async def test_two_subscriptions_give_one_message_with_the_union_then_unsubscribe(
    server: LiveServer,
) -> None:
    async with server.ws() as ws:
        s1 = (await ws.subscribe(camera_ids=["gate"], detection_types=["vehicle"]))
        s2 = (await ws.subscribe(min_confidence=0.8, events=True))
        assert s1["subscription_id"] != s2["subscription_id"]
        gate, yard = await server.post_frame("gate"), await server.post_frame("yard")
        got = await ws.until_published(server.expected)
        assert summary(got) == [
            ("detection", "gate", gate["frame_id"], (("person", 0.9), ("car", 0.6))),
            ("event", "gate", gate["frame_id"], "frame.processed"),
            ("detection", "yard", yard["frame_id"], (("person", 0.9),)),
            ("event", "yard", yard["frame_id"], "frame.processed"),
        ]
        assert_increasing(got)

        answer = await ws.request({"type": "unsubscribe",
                                   "subscription_id": s1["subscription_id"]}, "unsubscribed")
        assert answer["subscription_ids"] == [s1["subscription_id"]]
        gate = await server.post_frame("gate")
        got = await ws.until_published(server.expected)
        assert summary(got) == [("detection", "gate", gate["frame_id"], (("person", 0.9),)),
                                ("event", "gate", gate["frame_id"], "frame.processed")]

        error = await ws.request({"type": "unsubscribe", "subscription_id": "s999"}, "error")
        assert error["detail"] == "no subscription 's999'"
        s3 = await ws.subscribe(camera_ids=["yard"])
        answer = await ws.request({"type": "unsubscribe"}, "unsubscribed")
        assert answer["subscription_ids"] == sorted([s2["subscription_id"],
                                                     s3["subscription_id"]])
        await server.post_frame("gate")
        await server.post_frame("yard")
        assert await ws.until_published(server.expected) == []
        assert (await ws.stats())["client"]["subscriptions"] == 0


# Requests, statistics and bad messages -------------------------------------------------------

@BOTH_WAYS
async def test_ping_and_stats_count_connections_subscriptions_and_messages(
    server: LiveServer,
) -> None:
    async with server.ws() as one, server.ws() as two:
        earlier = (await one.stats())["messages_sent"]  # to the clients of setup
        assert await one.request({"type": "ping"}, "pong") == {"type": "pong"}
        await one.subscribe(camera_ids=["gate"])
        await two.subscribe(camera_ids=["yard"])
        await two.subscribe(events=True, detections=False)
        await server.post_frame("gate")
        await server.post_frame("yard")
        assert len(await one.until_published(server.expected)) == 1  # the gate frame
        assert len(await two.until_published(server.expected)) == 3  # yard frame, 2 events
        stats = await one.stats()
        assert stats["client"] == {"sent": one.received - 1, "queued": 0, "subscriptions": 1}
        assert {key: stats[key] for key in ("connections", "subscriptions", "messages_dropped",
                                            "clients_dropped", "published", "backend")} == {
            "connections": 2, "subscriptions": 3, "messages_dropped": 0, "clients_dropped": 0,
            "published": server.expected, "backend": "memory"}
        # Every text either connection has read was counted, and nothing else.
        assert stats["messages_sent"] == earlier + one.received - 1 + two.received


async def test_bad_messages_get_an_error_and_the_connection_stays_usable(
    server: LiveServer,
) -> None:
    bad: list[tuple[str | bytes, str]] = [
        ("hello", "not JSON"),
        ('{"type": "subscribe", "camera_ids": ["gate"]', "not JSON"),
        (json.dumps({"type": "dance"}), "unknown message type"),
        (json.dumps([1, 2]), "unknown message type"),
        (json.dumps({"kind": "ping"}), "unknown message type"),
        (json.dumps({"type": "subscribe", "min_confidence": 2}),
         "invalid subscribe: min_confidence: Input should be less than or equal to 1"),
        ('{"type": "subscribe", "min_confidence": NaN}', "invalid subscribe: min_confidence"),
        (json.dumps({"type": "subscribe", "camera_ids": "gate"}),
         "invalid subscribe: camera_ids: Input should be a valid list"),
        (json.dumps({"type": "subscribe", "camera_ids": ["x" * 65]}),
         "invalid subscribe: camera_ids.0: String should have at most 64 characters"),
        (json.dumps({"type": "subscribe", "colour": "red"}),
         "invalid subscribe: colour: Extra inputs are not permitted"),
        (json.dumps({"type": "subscribe", "last_event_id": -1}),
         "invalid subscribe: last_event_id"),
        (json.dumps({"type": "unsubscribe", "subscription_id": 7}), "invalid unsubscribe"),
        (json.dumps({"type": "ping", "padding": "x" * 20_000}),
         "message longer than 16384 characters"),
        (b"\x00binary", "binary"),
    ]
    async with server.ws() as ws:
        for message, detail in bad:
            if isinstance(message, bytes):
                await ws.connection.send(message)
            else:
                await ws.send(message)
            error = await ws.expect("error")
            assert error["error"] == "bad_message"
            assert detail in error["detail"], (message[:80], error)
            assert await ws.request({"type": "ping"}, "pong") == {"type": "pong"}
        # None of the invalid subscribes made a subscription; a valid one still works.
        assert (await ws.stats())["client"]["subscriptions"] == 0
        await ws.subscribe(camera_ids=["gate"])
        frame = await server.post_frame("gate")
        assert (await ws.expect("detection"))["frame_id"] == frame["frame_id"]


# Slow and dead clients ------------------------------------------------------------------------

def latency(message: dict[str, Any], received_at: float) -> float:
    return received_at - datetime.fromisoformat(message["processed_at"]).timestamp()


async def test_a_client_that_stops_reading_is_dropped_4008_and_the_others_keep_up(
    tmp_path: Path, sqlite_url: str,
) -> None:
    async with live_server(tmp_path, sqlite_url, ws_buffer_messages=8,
                           send_buffer=16384) as server:
        server.provider.extra = 20  # ~6 kB per message: the stalled socket fills sooner
        # The slow client: a small receive window, and a library queue of one message.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])))
        async with server.ws(max_queue=1, compression=None, sock=sock) as slow, \
                server.ws() as fast:
            await slow.subscribe(camera_ids=["gate"])
            await fast.subscribe(camera_ids=["gate"])
            frame_ids, latencies, dropped_at = [], [], None
            for index in range(300):
                frame_ids.append((await server.post_frame("gate"))["frame_id"])
                message = await fast.expect("detection", within=2)
                latencies.append(latency(message, time.time()))
                assert message["frame_id"] == frame_ids[-1]
                assert len(message["detections"]) == 23
                stats = await fast.stats()
                if dropped_at is None and stats["clients_dropped"]:
                    dropped_at = index
                if dropped_at is not None and index >= dropped_at + 15:
                    break
            assert dropped_at is not None, "the stalled client was never dropped"
            assert stats["messages_dropped"] >= 1 and stats["clients_dropped"] == 1
            # The dropped client no longer counts, nor does it hold the others up.
            assert stats["connections"] == 1 and stats["subscriptions"] == 1, stats
            before, after = latencies[:dropped_at], latencies[dropped_at:]
            assert max(after) < 0.5, after
            assert statistics.median(after) < statistics.median(before) + 0.05, (before, after)

            # The slow client reads at last: what it was sent, in order, then the close.
            code, texts = await slow.closed(within=10)
            assert code == 4008
            assert slow.connection.close_reason == "too slow: more than 8 messages behind"
            seen = [json.loads(text) for text in texts]
            seen_frames = [m["frame_id"] for m in seen if m["type"] == "detection"]
            assert seen_frames == frame_ids[:len(seen_frames)]
            assert 0 < len(seen_frames) <= dropped_at + 1, (len(seen_frames), dropped_at)


async def test_a_peer_that_never_answers_pings_is_disconnected(
    tmp_path: Path, sqlite_url: str,
) -> None:
    ping = 0.5
    async with live_server(tmp_path, sqlite_url, ping_seconds=ping) as server, \
            server.ws(ping_interval=None) as alive:
        sock, early = raw_upgrade(server.ws_url(token=server.keys["viewer"]))
        with sock:
            await alive.until_connections(2)
            took, data = await asyncio.to_thread(read_until_eof, sock, 10 * ping)
        frames = read_frames(early + data)
        opcodes = [opcode for opcode, _ in frames]
        assert opcodes[0] == 0x9 and opcodes[-1] == 0x8, frames  # pings, then a close
        close = frames[-1][1]
        assert int.from_bytes(close[:2], "big") == 1011 and b"ping timeout" in close[2:]
        assert 2 * ping * 0.8 <= took <= 2 * ping + 1.0, took
        # The server let go of it; the client that answers pings (its library does) stays.
        await alive.until_connections(1)
        await asyncio.sleep(3 * ping)
        assert await alive.request({"type": "ping"}, "pong") == {"type": "pong"}


# Resuming after a disconnection ---------------------------------------------------------------

async def resume_while_frames_come(server: LiveServer, reconnect: str,
                                   missed_frames: int) -> tuple[list[dict[str, Any]], ...]:
    """A reference client stays; another one reads a while, goes away while frames come, and
    comes back (`reconnect`: "subscribe" or "query") while frames keep coming. Returns what the
    reference saw after the other's last id, and what the other saw after it came back."""
    async with server.ws() as reference:
        await reference.subscribe(events=True)
        async with server.ws() as leaving:
            await leaving.subscribe(events=True)
            await server.post_frame("gate")
            await server.post_frame("yard")
            seen = [await leaving.recv() for _ in range(4)]
            last_id = assert_increasing(seen)[-1]
        for _ in range(missed_frames):
            await server.post_frame("yard")

        async def keep_sending() -> None:
            for index in range(6):
                await server.post_frame("gate" if index % 2 else "yard", "async")
                await asyncio.sleep(0.01)

        sender = asyncio.create_task(keep_sending())
        query = {"last_event_id": last_id} if reconnect == "query" else {}
        async with server.ws(query=query) as back:
            if reconnect == "query":
                subscribed = await back.subscribe(events=True)
            else:
                subscribed = await back.subscribe(events=True, last_event_id=last_id)
            assert subscribed["last_event_id"] > last_id
            await sender
            got = await back.until_published(server.expected)
        everything = await reference.until_published(server.expected)
    return [m for m in everything if m["id"] > last_id], got


@pytest.mark.parametrize("reconnect", ["subscribe", "query"])
async def test_a_client_that_comes_back_with_last_event_id_gets_what_it_missed(
    server: LiveServer, reconnect: str,
) -> None:
    expected, got = await resume_while_frames_come(server, reconnect, missed_frames=3)
    assert len(expected) == 2 * (3 + 6)
    assert assert_increasing(got) == [m["id"] for m in expected]
    assert got == expected


async def test_more_missed_than_the_buffer_holds_still_resumes(
    tmp_path: Path, sqlite_url: str,
) -> None:
    async with live_server(tmp_path, sqlite_url, ws_buffer_messages=8) as server:
        expected, got = await resume_while_frames_come(server, "subscribe", missed_frames=10)
    assert len(expected) == 2 * (10 + 6)
    assert got == expected


async def test_when_the_missed_messages_are_gone_a_resync_comes_first(
    tmp_path: Path, sqlite_url: str,
) -> None:
    async with live_server(tmp_path, sqlite_url, ws_replay_messages=3) as server, \
            server.ws() as reference:
        await reference.subscribe(events=True)
        async with server.ws() as leaving:
            await leaving.subscribe(events=True)
            await server.post_frame("gate")
            last_id = [await leaving.recv() for _ in range(2)][-1]["id"]
        for _ in range(3):
            await server.post_frame("yard")
        total = server.expected
        everything = await reference.until_published(total)
        async with server.ws() as back:
            await back.subscribe(events=True, last_event_id=last_id)
            resync = await back.expect("resync")
            assert resync["after_id"] == last_id and "REST API" in resync["detail"]
            kept = await back.until_published(total)
            assert kept == everything[-3:]
            # Live messages follow.
            frame = await server.post_frame("gate")
            live = await back.until_published(server.expected)
            assert summary(live) == [
                ("detection", "gate", frame["frame_id"], ALL),
                ("event", "gate", frame["frame_id"], "frame.processed")]
            assert live[0]["id"] > kept[-1]["id"]
            newest = live[-1]["id"]
        # Up to date: no resync, nothing replayed.
        async with server.ws() as current:
            assert (await current.subscribe(events=True, last_event_id=newest))[
                "last_event_id"] == newest
            assert await current.until_published(server.expected) == []


async def test_after_a_restart_the_client_resyncs_and_ids_go_on_growing(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str,
) -> None:
    async with live_server(tmp_path, sqlite_url) as server, server.ws() as ws:
        await ws.subscribe()
        await server.post_frame("gate")
        last_id = (await ws.expect("detection"))["id"]
    # The same service started again (a fresh database, as the memory log is fresh).
    (tmp_path / "again").mkdir()
    async with live_server(tmp_path / "again", sqlite_copy(request, tmp_path / "again")
                           ) as server, server.ws() as ws:
        await ws.subscribe(last_event_id=last_id)
        assert (await ws.expect("resync"))["after_id"] == last_id
        frame = await server.post_frame("gate")
        message = await ws.expect("detection")
        assert message["frame_id"] == frame["frame_id"] and message["id"] > last_id
