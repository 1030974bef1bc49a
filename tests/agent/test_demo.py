"""The demo camera of `make run`: the street frames shipped with framewatch show people and cars
to the built-in detector, `FRAMEWATCH_DEMO=1` has the server send them through the camera agent
and store their detections, and `FRAMEWATCH_DEMO=0` leaves it out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from framewatch.agent import demo
from framewatch.agent.demo import DEMO_CAMERA_ID, DEMO_KEY_NAME, FRAMES_DIR
from framewatch.app import create_app
from framewatch.core.config import Settings
from framewatch.detector.detector import BuiltinDetector
from framewatch.models import ApiKey, Camera, Detection, Frame
from framewatch.runtime import Runtime
from tests.agent.media import DEMO_FRAMES, demo_image
from tests.api_fixtures import make_settings
from tests.detector_fixtures import builtin_detector_fixture  # noqa: F401


def test_every_demo_frame_shows_people_and_the_parked_car(
    builtin_detector: BuiltinDetector,
) -> None:
    assert len(DEMO_FRAMES) == 30
    assert (FRAMES_DIR / "SOURCES.md").is_file()
    for index, path in enumerate(DEMO_FRAMES):
        image = demo_image(index)
        assert image.shape == (240, 320, 3), path.name
        found = builtin_detector.detect(image, frozenset({"person", "vehicle"}), 0.4,
                                        encodings=False)
        labels = Counter(thing.label for thing in found)
        assert labels["person"] >= 3, f"{path.name}: {labels}"
        assert labels["car"] >= 1, f"{path.name}: {labels}"


def demo_settings(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                  demo: str) -> Settings:
    """Settings as `make run` gives them (FRAMEWATCH_DEMO in the environment), with the
    built-in detector as the provider, as on a fresh install."""
    monkeypatch.setenv("FRAMEWATCH_DEMO", demo)
    return make_settings(tmp_path, sqlite_url, identify_faces=False)


async def demo_rows(runtime: Runtime) -> tuple[Camera | None, ApiKey | None, int, Counter[str]]:
    """Camera `demo`, its agent key, how many frames it sent, and its detections by type."""
    async with runtime.session_factory() as session:
        camera = await session.get(Camera, DEMO_CAMERA_ID)
        key = await session.scalar(select(ApiKey).where(ApiKey.name == DEMO_KEY_NAME))
        frames = await session.scalar(
            select(func.count()).select_from(Frame).where(Frame.camera_id == DEMO_CAMERA_ID))
        types = (await session.execute(
            select(Detection.type, func.count()).where(Detection.camera_id == DEMO_CAMERA_ID)
            .group_by(Detection.type))).all()
    return camera, key, int(frames or 0), Counter({kind: int(count) for kind, count in types})


async def wait_for_detections(app: FastAPI, frames_at_least: int, within: float = 180.0
                              ) -> tuple[Camera | None, ApiKey | None, int, Counter[str]]:
    """Poll until the demo camera has sent `frames_at_least` frames with people found in them.
    Generous: the detector's weights load at start, on a machine other tests keep busy."""
    runtime: Runtime = app.state.runtime
    deadline = time.monotonic() + within
    while True:
        rows = await demo_rows(runtime)
        if rows[2] >= frames_at_least and rows[3]["person"] > 0:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"no detections from the demo camera after {within} s: {rows}")
        await asyncio.sleep(0.2)


async def test_the_demo_camera_sends_the_street_and_people_are_detected(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_settings(tmp_path, sqlite_url, monkeypatch, "1")
    assert settings.demo is True

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        camera, key, frames, types = await wait_for_detections(app, 2)
        assert "demo camera" in running_task_names()
    assert "demo camera" not in running_task_names()  # stopped with the app
    assert camera is not None and camera.enabled and camera.name == "Demo street"
    assert key is not None
    assert (key.role, key.camera_ids, key.revoked_at) == ("agent", [DEMO_CAMERA_ID], None)
    # Every demo frame shows at least three people and the parked car (the test above); a
    # frame may be stored a moment before its detections.
    assert types["person"] >= 3 * (frames - 1) >= 3
    assert types["vehicle"] >= 1

    # Next start: the same camera and key row, with a new secret (only the hash of the last
    # one was kept), and the street flowing again.
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        _, again, more_frames, _ = await wait_for_detections(app, frames + 2)
    assert again is not None and (again.id, again.revoked_at) == (key.id, None)
    assert again.key_hash != key.key_hash
    assert more_frames >= frames + 2


def running_task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if not task.done()}


async def test_framewatch_demo_0_turns_it_off(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_settings(tmp_path, sqlite_url, monkeypatch, "0")
    assert settings.demo is False

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        # The demo camera is set up before the app answers its first request: by now, it
        # would have made its camera and key.
        camera, key, frames, _ = await demo_rows(app.state.runtime)
        tasks = running_task_names()
    assert (camera, key, frames) == (None, None, 0)
    assert "demo camera" not in tasks


async def test_the_demo_camera_stops_by_itself_after_its_run_time(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first look, not a load left running for days (15 minutes in `make run`).
    monkeypatch.setattr(demo, "DEMO_RUN_SECONDS", 3.0)
    settings = demo_settings(tmp_path, sqlite_url, monkeypatch, "1")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 60
        while "demo camera" in running_task_names():
            assert time.monotonic() < deadline, "the demo camera is still running"
            await asyncio.sleep(0.1)
        _, _, sent, _ = await demo_rows(app.state.runtime)
        await asyncio.sleep(1.5)  # more than two frames' time at 2 fps: nothing more comes
        _, _, later, _ = await demo_rows(app.state.runtime)
    assert later == sent  # (that frames do flow meanwhile: the test above)
