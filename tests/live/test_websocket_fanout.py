"""Live messages across processes: two `framewatch serve` instances, A and B, and a
`framewatch worker`, on one PostgreSQL database and one data directory, with the live stream in
Redis (FRAMEWATCH_REDIS_URL) and Celery's broker in another Redis database. A client on either
instance sees what any process committed — a frame the worker processed, a frame the other
instance processed — and a client that comes back on the other instance resumes from its
`last_event_id`. The processes are started once for the module and killed at its end."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.api_fixtures import make_settings
from tests.conftest import postgres_emptied, redis_url_or_skip
from tests.live.clients import (
    CrowdProvider,
    LiveServer,
    Ws,
    assert_increasing,
    found,
    live_server_setup,
)
from tests.support.processes import (
    Process,
    ProcessGroup,
    celery_worker_id,
    framewatch_env,
    redis_db_url,
)
from tests.support.servers import free_port, serve_app

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

START_WITHIN = 60.0  # seconds for a process to serve, or the worker to send a heartbeat
WORKER_RECV_TIMEOUT = 20.0  # a frame through the broker and the worker
SETTINGS: dict[str, Any] = {
    "log_level": "WARNING", "worker_heartbeat_seconds": 1, "provider_check_seconds": 3600,
    "stats_interval_seconds": 3600, "cleanup_interval_seconds": 3600,
    "queue_redispatch_seconds": 300,
}


def broker_db_url(url: str) -> str:
    """The broker's Redis database: five away from the test one, so that it is neither that
    one nor the neighbour the Celery tests take for their broker."""
    path = urlsplit(url).path.strip("/")
    db = int(path) if path else 0
    return redis_db_url(url, db - 5 if db >= 5 else db + 5)


@dataclass
class Deployment:
    urls: dict[str, str]  # "A" and "B"
    keys: dict[str, str]
    processes: ProcessGroup
    frame_numbers: Iterator[int]


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        try:
            client.flushdb()
        except redis.ConnectionError as exc:
            raise RuntimeError(f"Redis at {url} is unreachable: {exc}") from exc


def wait_until_serving(processes: ProcessGroup, process: Process, url: str) -> None:
    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        processes.check_running([process])
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{process.name} did not serve in {START_WITHIN} s:\n"
                         f"{process.output()}")


def wait_for_heartbeat(processes: ProcessGroup, worker: Process, url: str,
                       keys: dict[str, str]) -> None:
    deadline = time.monotonic() + START_WITHIN
    headers = {"Authorization": f"Bearer {keys['viewer']}"}
    while time.monotonic() < deadline:
        processes.check_running()
        stats = httpx.get(f"{url}/api/v1/detections/queue-stats", headers=headers,
                          timeout=5).json()
        if celery_worker_id(worker.pid) in {w["worker_id"] for w in stats["workers"]}:
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker sent no heartbeat in {START_WITHIN} s:\n{worker.output()}")


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    database = postgres_emptied(request)
    redis_url = redis_url_or_skip()
    broker_url = broker_db_url(redis_url)
    flush(redis_url)
    flush(broker_url)
    tmp = tmp_path_factory.mktemp("fanout")
    provider = CrowdProvider()
    settings = make_settings(tmp, database, redis_url=redis_url, broker_url=broker_url,
                             **SETTINGS)
    processes = ProcessGroup(tmp / "processes", framewatch_env(settings))
    with serve_app(provider.app()) as provider_url:
        try:
            urls = {}
            # One after the other: A creates the admin key and the default provider first.
            for name in ("A", "B"):
                port = free_port()
                process = processes.start(f"serve-{name}", "serve",
                                          env={**processes.env, "FRAMEWATCH_PORT": str(port)})
                urls[name] = f"http://127.0.0.1:{port}"
                wait_until_serving(processes, process, urls[name])
            worker = processes.worker()
            keys = asyncio.run(live_server_setup(urls["A"], provider_url))
            wait_for_heartbeat(processes, worker, urls["A"], keys)
            yield Deployment(urls, keys, processes, itertools.count(1))
            processes.check_running()
        finally:
            processes.stop_all()
            flush(broker_url)


@pytest.fixture
async def instances(deployment: Deployment) -> AsyncIterator[dict[str, LiveServer]]:
    async with httpx.AsyncClient(base_url=deployment.urls["A"], timeout=10) as a, \
            httpx.AsyncClient(base_url=deployment.urls["B"], timeout=10) as b:
        yield {name: LiveServer(deployment.urls[name], http, CrowdProvider(),
                                dict(deployment.keys), deployment.frame_numbers)
               for name, http in (("A", a), ("B", b))}
    deployment.processes.check_running()


async def collect(ws: Ws, frame_ids: list[int], within: float = 10.0) -> list[dict[str, Any]]:
    """Messages until each of `frame_ids` has come as a detection and as its `frame.processed`
    event; any other message fails."""
    wanted = {(kind, frame_id) for frame_id in frame_ids for kind in ("detection", "event")}
    received: list[dict[str, Any]] = []
    while wanted:
        message = await ws.recv(within)
        if message["type"] == "event":
            assert message["event"]["event_type"] == "frame.processed", message
            key = ("event", message["event"]["frame_id"])
        else:
            assert message["type"] == "detection", message
            key = ("detection", message["frame_id"])
        assert key in wanted, (key, "unexpected or twice", received)
        wanted.discard(key)
        received.append(message)
    assert_increasing(received)
    return received


async def test_clients_on_both_instances_see_the_worker_and_the_other_instance(
    instances: dict[str, LiveServer],
) -> None:
    a, b = instances["A"], instances["B"]
    async with a.ws() as on_a, b.ws() as on_b:
        await on_a.subscribe(events=True)
        await on_b.subscribe(events=True, camera_ids=["gate", "yard"])
        queued = await a.post_frame("gate", "async")  # processed by the Celery worker
        assert queued["status"] == "pending", queued
        from_worker = [await collect(ws, [queued["frame_id"]], WORKER_RECV_TIMEOUT)
                       for ws in (on_a, on_b)]
        synced = await b.post_frame("yard")  # processed by instance B itself
        from_b = [await collect(ws, [synced["frame_id"]]) for ws in (on_a, on_b)]

    # The same messages, with the same ids, on both instances.
    assert from_worker[0] == from_worker[1] and from_b[0] == from_b[1]
    detection, event = from_worker[0]
    assert (detection["camera_id"], detection["provider"]) == ("gate", "crowd")
    assert found(detection) == (("person", 0.9), ("car", 0.6), ("person", 0.3))
    assert event["event"]["frame_id"] == queued["frame_id"]
    assert event["event"]["payload"]["counts"] == {"person": 2, "vehicle": 1}
    detection, event = from_b[0]
    assert detection["camera_id"] == "yard" and detection["frame_id"] == synced["frame_id"]
    assert [d["id"] for d in detection["detections"]] == [d["id"] for d in synced["detections"]]
    assert from_b[0][0]["id"] > from_worker[0][-1]["id"]


async def test_serve_declines_per_message_deflate(instances: dict[str, LiveServer]) -> None:
    """The client offers permessage-deflate (the `websockets` default, as browsers do);
    `framewatch serve` does not take it: messages go out as plain text frames."""
    async with instances["A"].ws(compression="deflate") as ws:
        assert ws.connection.request is not None and ws.connection.response is not None
        assert "permessage-deflate" in ws.connection.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.connection.response.headers
        assert await ws.request({"type": "ping"}, "pong") == {"type": "pong"}


async def test_a_client_comes_back_on_the_other_instance_and_resumes(
    instances: dict[str, LiveServer],
) -> None:
    a, b = instances["A"], instances["B"]
    async with b.ws() as reference:
        await reference.subscribe(events=True)
        async with a.ws() as leaving:
            await leaving.subscribe(events=True)
            first = await a.post_frame("gate")
            seen = await collect(leaving, [first["frame_id"]])
        await collect(reference, [first["frame_id"]])
        last_id = seen[-1]["id"]

        # Away: frames processed by B, by the worker and by A.
        missed = [await b.post_frame("yard"), await a.post_frame("gate", "async"),
                  await a.post_frame("yard")]

        async def keep_sending() -> list[dict[str, Any]]:
            sent = []
            for index in range(4):
                sent.append(await (a if index % 2 else b).post_frame("gate"))
                await asyncio.sleep(0.05)
            return sent

        sender = asyncio.create_task(keep_sending())
        async with b.ws() as back:
            await back.subscribe(events=True, last_event_id=last_id)
            later = await sender
            frame_ids = [f["frame_id"] for f in missed + later]
            got = await collect(back, frame_ids, WORKER_RECV_TIMEOUT)
            last_id = got[-1]["id"]
        expected = await collect(reference, frame_ids, WORKER_RECV_TIMEOUT)
        # Exactly what the client that stayed saw, in the same order.
        assert got == expected

        # Away again, then back on A with the query form.
        missed = [await a.post_frame("yard"), await b.post_frame("gate")]
        async with a.ws(query={"last_event_id": last_id}) as back:
            subscribed = await back.subscribe(events=True)
            assert subscribed["last_event_id"] >= last_id
            got = await collect(back, [f["frame_id"] for f in missed])
            assert await back.request({"type": "ping"}, "pong") == {"type": "pong"}
        assert got == await collect(reference, [f["frame_id"] for f in missed])
        assert got[0]["id"] > last_id


async def test_reconnecting_again_and_again_under_load_never_skips_or_repeats(
    instances: dict[str, LiveServer],
) -> None:
    """Each reconnection resumes from a message before the newest it saw, while both
    instances store frames non-stop: the replay and the live stream overlap every time."""
    a, b = instances["A"], instances["B"]
    sent: list[int] = []
    sending, stopped = True, asyncio.Event()

    async def keep_sending(server: LiveServer, camera_id: str) -> None:
        while sending:
            sent.append((await server.post_frame(camera_id))["frame_id"])

    async def read_all(ws: Ws) -> list[dict[str, Any]]:
        """Every detection until sending has stopped and each frame sent has come."""
        received: list[dict[str, Any]] = []
        while not stopped.is_set():
            with contextlib.suppress(TimeoutError):  # cancelling a receive loses nothing
                received.append(await ws.expect("detection", within=0.2))
        pending = set(sent) - {m["frame_id"] for m in received}
        while pending:
            received.append(message := await ws.expect("detection"))
            pending.discard(message["frame_id"])
        return received

    async with a.ws() as reference:
        await reference.subscribe()
        senders = [asyncio.create_task(keep_sending(server, camera_id))
                   for server, camera_id in ((a, "gate"), (b, "yard"), (b, "gate"))]
        everything = asyncio.create_task(read_all(reference))
        try:
            async with a.ws() as first:
                await first.subscribe()
                last_id = (await first.expect("detection"))["id"]
            rounds: list[tuple[int, list[int]]] = []
            for index in range(40):
                async with (a if index % 2 else b).ws() as ws:
                    await ws.subscribe(last_event_id=last_id)
                    ids = [(await ws.expect("detection"))["id"] for _ in range(6)]
                rounds.append((last_id, ids))
                last_id = ids[2]
        finally:
            sending = False
            await asyncio.gather(*senders)
            stopped.set()
        reference_ids = [m["id"] for m in await everything]
    assert len(reference_ids) == len(sent) > 30
    assert reference_ids == sorted(set(reference_ids))
    for after, ids in rounds:
        start = reference_ids.index(after) + 1
        assert ids == reference_ids[start:start + 6], (after, ids)
