"""What gets sent and when: files played at their own rate, unchanged frames skipped, frames kept
while the API is away and delivered when it is back, and 429 Retry-After honoured."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise
from pathlib import Path

import cv2

from framewatch.agent.runner import Agent
from tests.agent.conftest import StartApi
from tests.agent.media import (
    DEMO_FRAMES,
    camera_server,
    copy_frames,
    demo_image,
    nearest_demo_frame,
    noisy_copies,
    sha256,
    write_video,
)
from tests.agent.support import ApiServer, agent_config, camera_status, running, wait_until
from tests.support.flaky_provider import FlakyProvider


async def test_a_video_file_plays_once_at_its_own_frame_rate(api: ApiServer,
                                                             tmp_path: Path) -> None:
    # 3 s of video at 10 fps; sampled at 5 fps: every other frame, in order.
    video = write_video(tmp_path / "clip.avi", [demo_image(i) for i in range(30)], fps=10)
    camera = {"camera_id": "gate", "source": str(video), "fps": 5, "loop": False}
    agent = Agent(agent_config(api.url, camera), api.agent_key)

    started = time.monotonic()
    await asyncio.wait_for(agent.run(), 60)  # returns by itself once the file is sent
    elapsed = time.monotonic() - started

    status = camera_status(agent)
    assert (status["kind"], status["state"], status["connected"]) == ("file", "finished", False)
    assert elapsed >= 2.8  # played in real time, not read as fast as the disk allows
    # 5 a second of a 3 s clip: 16 at most; fewer when a busy machine makes the agent late.
    assert 8 <= status["grabbed"] <= 16
    assert status["skipped"] == 0 and status["sent"] == status["grabbed"]
    assert (status["buffered"], status["dropped"], status["rejected"]) == (0, 0, 0)
    frames = await api.frames("gate")
    assert len(frames) == status["sent"]
    shown = [nearest_demo_frame(cv2.imread(str(api.frame_file(frame)))) for frame in frames]
    assert shown == sorted(set(shown))  # the clip's moments in order, none twice
    assert shown[0] <= 2 and shown[-1] >= 20  # from its start to its end


async def test_a_static_snapshot_costs_one_provider_call(
    api: ApiServer, flaky: tuple[FlakyProvider, str]
) -> None:
    provider = flaky[0]
    with camera_server() as camera:
        source = {"camera_id": "yard", "source": f"{camera.url}/snapshot.jpg",
                  "kind": "snapshot", "fps": 10}
        agent = Agent(agent_config(api.url, source), api.agent_key)
        async with running(agent):
            await wait_until(lambda: camera_status(agent, "yard")["grabbed"] >= 20, 60,
                             "20 snapshots grabbed", agent.status)
            status = camera_status(agent, "yard")
            assert status["kind"] == "snapshot"
            assert status["sent"] == 1
            assert status["skipped"] == status["grabbed"] - 1
            stored = await api.frames("yard")
            # Snapshots are sent as the camera's own bytes, not re-encoded.
            assert [frame.sha256 for frame in stored] == [sha256(DEMO_FRAMES[0].read_bytes())]
            assert provider.calls == 1

            camera.snapshot = DEMO_FRAMES[12].read_bytes()  # someone walks in
            await wait_until(lambda: camera_status(agent, "yard")["sent"] == 2, 60,
                             "the new picture sent", agent.status)
            grabbed = camera_status(agent, "yard")["grabbed"]
            await wait_until(lambda: camera_status(agent, "yard")["grabbed"] >= grabbed + 10, 60,
                             "10 more snapshots grabbed", agent.status)
            status = camera_status(agent, "yard")
            assert status["sent"] == 2
            assert status["skipped"] == status["grabbed"] - 2
            assert [frame.sha256 for frame in await api.frames("yard")] == [
                sha256(DEMO_FRAMES[0].read_bytes()), sha256(DEMO_FRAMES[12].read_bytes())]
            assert provider.calls == 2


async def test_sensor_noise_on_a_static_scene_is_not_a_change(api: ApiServer,
                                                              tmp_path: Path) -> None:
    # A camera filming an empty street: the same picture, with noise, re-encoded each frame.
    video = write_video(tmp_path / "static.avi", noisy_copies(demo_image(0), 40, sigma=6))
    camera = {"camera_id": "gate", "source": str(video), "fps": 10, "loop": False}

    agent = Agent(agent_config(api.url, camera), api.agent_key)
    await asyncio.wait_for(agent.run(), 60)
    status = camera_status(agent)
    assert status["grabbed"] >= 15  # 40 at most; fewer when a busy machine makes the agent late
    assert status["sent"] == 1 and status["skipped"] == status["grabbed"] - 1
    assert len(await api.frames("gate")) == 1

    # Threshold 0: every frame is sent. (Another camera: the API answers the same bytes from
    # the same camera within 3 s from its cache, without storing them again.)
    every = Agent(agent_config(api.url, {**camera, "camera_id": "yard", "change_threshold": 0}),
                  api.agent_key)
    await asyncio.wait_for(every.run(), 60)
    status = camera_status(every, "yard")
    assert status["skipped"] == 0 and status["sent"] == status["grabbed"] >= 15
    assert len(await api.frames("yard")) == status["sent"]


async def test_frames_are_kept_while_the_api_is_down_and_delivered_when_it_is_back(
    start_api: StartApi, tmp_path: Path
) -> None:
    api = await start_api()
    api.stop()
    folder = copy_frames(tmp_path / "frames", range(12))[0].parent
    camera = {"camera_id": "gate", "source": str(folder), "fps": 10, "loop": False,
              "buffer_frames": 5}
    agent = Agent(agent_config(api.url, camera, reconnect_max_seconds=0.5), api.agent_key)
    status = lambda: camera_status(agent)  # noqa: E731

    async with running(agent) as task:
        # 12 frames grabbed, 5 kept, the 7 oldest dropped; nothing sent.
        # The folder is read ("finished"); its frames wait.
        await wait_until(lambda: (status()["state"], status()["grabbed"], status()["buffered"],
                                  status()["dropped"]) == ("finished", 12, 5, 7), 60,
                         "12 grabbed, 5 buffered, 7 dropped", agent.status)
        down = status()
        assert (down["sent"], down["skipped"], down["api_reachable"]) == (0, 0, False)
        assert down["last_error"].startswith(
            f"cannot reach the API at {api.url}/api/v1/detections/send-frame: ConnectError")
        assert not task.done()

        api.start()
        await asyncio.wait_for(task, 60)  # played once: done when the buffer is delivered

    up = status()
    assert (up["sent"], up["buffered"], up["dropped"], up["api_reachable"]) == (5, 0, 7, True)
    stored = await api.frames("gate")
    # The 5 newest frames, oldest first, as the files' own bytes, with their grab times.
    assert [frame.sha256 for frame in stored] == [
        sha256(DEMO_FRAMES[i].read_bytes()) for i in range(7, 12)]
    captured = [frame.captured_at for frame in stored]
    assert captured == sorted(captured)
    assert all(frame.captured_at < frame.received_at for frame in stored)


async def test_429_retry_after_is_honoured(start_api: StartApi, tmp_path: Path) -> None:
    # One frame every 2 s per key (Retry-After: 2); the agent offers 5 a second.
    api = await start_api(rate_limit_send_frame_per_minute=30, rate_limit_burst_seconds=1)
    camera = {"camera_id": "gate", "source": str(DEMO_FRAMES[0].parent), "fps": 5}
    # A quick back-off for other errors: were Retry-After ignored, retries would come within
    # 0.05-0.4 s and be refused many times over.
    agent = Agent(agent_config(api.url, camera, reconnect_initial_seconds=0.05),
                  api.agent_key)
    async with running(agent):
        await wait_until(lambda: camera_status(agent)["sent"] >= 4, 60, "4 frames sent",
                         agent.status)
        status = camera_status(agent)
    assert status["rate_limited"] >= 3
    # At most one early retry per frame: a 429 whose token arrives a hair late.
    assert status["rate_limited"] <= 2 * status["sent"]
    assert "HTTP 429 rate_limited" in status["last_error"]
    assert "retry in" in status["last_error"]
    stored = await api.frames("gate")
    gaps = [(b.received_at - a.received_at).total_seconds() for a, b in pairwise(stored)]
    # The limiter admits one every 2 s; `received_at` is stamped a little after admission, later
    # or sooner on a busy machine, hence the margin.
    assert len(gaps) >= 3 and min(gaps) >= 1.5
