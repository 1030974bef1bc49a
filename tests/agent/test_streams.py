"""Live streams through OpenCV's FFmpeg backend: RTSP from GStreamer's RTSP server, MJPEG over
HTTP. Frames reach the API from the right camera; a stream that drops is retried with a growing
back-off, and frames flow again when it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framewatch.agent.runner import Agent
from tests.agent.media import RtspServer, camera_server, demo_image, require_rtsp_server
from tests.agent.support import ApiServer, agent_config, camera_status, running, wait_until


def street_distance(api: ApiServer, frame: Any) -> float:
    """Mean grey-level distance of a stored frame to the nearest demo frame (0-255)."""
    stored = cv2.cvtColor(cv2.imread(str(api.frame_file(frame))), cv2.COLOR_BGR2GRAY)
    return min(
        float(np.abs(stored.astype(np.int16)
                     - cv2.cvtColor(demo_image(i), cv2.COLOR_BGR2GRAY).astype(np.int16)).mean())
        for i in range(30)
    )


async def watch_outage(agent: Agent, failures: int, camera_id: str = "gate",
                       within: float = 60.0) -> tuple[list[str], list[float]]:
    """The distinct errors and retry delays the camera reports, in order, until it has failed
    to reconnect `failures` times."""
    errors: list[str] = []
    delays: list[float] = []
    deadline = time.monotonic() + within
    while True:
        status = camera_status(agent, camera_id)
        if status["last_error"] and (not errors or errors[-1] != status["last_error"]):
            errors.append(status["last_error"])
        delay = status["retry_in_seconds"]
        if delay is not None and (not delays or delays[-1] != delay):
            delays.append(delay)
        if status["failed_attempts"] >= failures:
            return errors, delays
        if time.monotonic() > deadline:
            raise AssertionError(f"not {failures} failed attempts after {within} s: {status}")
        await asyncio.sleep(0.005)


async def test_rtsp_frames_arrive_and_a_dropped_stream_is_reconnected(
    api: ApiServer, street_video: Path, tmp_path: Path
) -> None:
    require_rtsp_server()
    rtsp = RtspServer(street_video, tmp_path)
    rtsp.start()
    config = agent_config(api.url, {"camera_id": "gate", "source": rtsp.url, "fps": 4},
                          reconnect_initial_seconds=0.25, reconnect_max_seconds=2.0)
    agent = Agent(config, api.agent_key)
    try:
        async with running(agent):
            await wait_until(lambda: camera_status(agent)["sent"] >= 3, 60, "3 frames sent",
                             agent.status)
            streaming = camera_status(agent)
            assert (streaming["kind"], streaming["source"]) == ("stream", rtsp.url)
            assert (streaming["state"], streaming["connected"]) == ("streaming", True)
            frames = await api.frames("gate")
            assert len(frames) >= 3
            assert {(frame.width, frame.height) for frame in frames} == {(320, 240)}
            # H.264 over RTSP, decoded and re-encoded: still the street, to a few grey levels.
            assert max(street_distance(api, frame) for frame in frames) < 8

            rtsp.stop()
            errors, delays = await watch_outage(agent, 5)
            down = camera_status(agent)
            assert (down["state"], down["connected"]) == ("reconnecting", False)
            assert errors == [f"the stream {rtsp.url} stopped sending frames",
                              f"cannot open the stream {rtsp.url}"]
            assert down["last_error_at"] is not None
            # 0.25 s, 0.5 s, 1 s, 2 s, 2 s (each up to a fifth shorter): backing off up to the
            # maximum, not hammering.
            assert len(delays) == down["failed_attempts"] == 5
            for delay, base in zip(delays, (0.25, 0.5, 1.0, 2.0, 2.0), strict=True):
                assert 0.8 * base - 0.001 <= delay <= base

            before = {frame.id for frame in await api.frames("gate")}
            rtsp.start()
            sent = down["sent"]
            await wait_until(lambda: camera_status(agent)["sent"] >= sent + 3, 60,
                             "3 more frames sent after the restart", agent.status)
            back = camera_status(agent)
            assert (back["state"], back["connected"], back["reconnects"]) == ("streaming", True, 1)
            assert (back["failed_attempts"], back["retry_in_seconds"]) == (0, None)
            after = [frame for frame in await api.frames("gate") if frame.id not in before]
            assert len(after) >= 3
            assert {frame.camera_id for frame in after} == {"gate"}
    finally:
        rtsp.stop()


async def test_mjpeg_over_http_frames_arrive_and_a_dropped_stream_is_reconnected(
    api: ApiServer,
) -> None:
    with camera_server() as camera:
        source = f"{camera.url}/video.mjpg"
        agent = Agent(agent_config(api.url, {"camera_id": "yard", "source": source, "fps": 4}),
                      api.agent_key)
        async with running(agent):
            await wait_until(lambda: camera_status(agent, "yard")["grabbed"] >= 12, 60,
                             "12 frames grabbed", agent.status)
            streaming = camera_status(agent, "yard")
            assert streaming["kind"] == "stream" and streaming["connected"] is True
            # Grabbed at the rate asked (4 fps), not the stream's 10 fps; less while it connects.
            assert 1.0 <= streaming["fps_in"] <= 4.5
            assert 0.5 <= streaming["fps_out"] <= 4.5
            # The stream shows people walking: every frame grabbed is a change worth sending.
            assert streaming["skipped"] == 0
            assert streaming["sent"] + streaming["buffered"] >= 11
            frames = await api.frames("yard")
            assert len(frames) >= 10 and not await api.frames("gate")
            assert max(street_distance(api, frame) for frame in frames) < 8

            camera.stop()
            errors, delays = await watch_outage(agent, 2, "yard")
            assert errors == [f"the stream {source} stopped sending frames",
                              f"cannot open the stream {source}"]
            assert 0.16 <= delays[0] <= 0.2 and 0.32 <= delays[1] <= 0.4  # agent_config's 0.2 s
            down = camera_status(agent, "yard")
            assert (down["state"], down["connected"]) == ("reconnecting", False)
            sent = camera_status(agent, "yard")["sent"]

            camera.start()
            await wait_until(lambda: camera_status(agent, "yard")["sent"] >= sent + 3, 60,
                             "3 more frames sent after the restart", agent.status)
            back = camera_status(agent, "yard")
            assert (back["state"], back["reconnects"]) == ("streaming", 1)
            assert len(await api.frames("yard")) >= sent + 3
