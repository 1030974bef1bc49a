"""`framewatch agent`: send a camera's frames (or several cameras', from a YAML file)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from framewatch.agent.config import AgentConfig

log = logging.getLogger("framewatch.agent")

# The options that describe one camera; with --config, the cameras come from the file instead.
CAMERA_OPTIONS = {"camera_id": "--camera-id", "source": "--source", "kind": "--kind",
                  "fps": "--fps", "change_threshold": "--change-threshold", "loop": "--loop",
                  "mode": "--mode", "buffer_frames": "--buffer-frames"}
# Options that override the file's values.
AGENT_OPTIONS = {"api_url": "--api-url", "key_file": "--key-file",
                 "status_port": "--status-port", "log_interval_seconds": "--log-interval"}


@click.command()
@click.option("--config", "config_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file with api_url, key_file, status_port and a list of cameras (see "
              "docs/agent.md). --api-url, --key-file, --status-port and --log-interval override "
              "its values; the camera options cannot be given with it.")
@click.option("--camera-id", default=None, help="The framewatch camera to send frames as.")
@click.option("--source", default=None,
              help="rtsp:// or http:// stream (MJPEG included), video file, folder of images, "
              "or snapshot URL (with --kind snapshot).")
@click.option("--kind", type=click.Choice(["stream", "file", "folder", "snapshot"]),
              default=None,
              help="What --source is [default: folder for a directory, file for another path, "
              "stream for a URL].")
@click.option("--fps", type=click.FloatRange(0, 30, min_open=True), default=2.0,
              show_default=True, help="Frames grabbed per second.")
@click.option("--change-threshold", type=click.FloatRange(0, 100), default=0.5,
              show_default=True,
              help="Percent of the picture that must change for a frame to be sent; unchanged "
              "frames are skipped (and counted). 0 sends every frame.")
@click.option("--loop/--once", default=True, show_default=True,
              help="Replay a video file or folder of images from the start when it ends, or "
              "play it once and exit when its frames are sent.")
@click.option("--mode", type=click.Choice(["sync", "async"]), default="sync", show_default=True,
              help="sync: wait for each frame's detections; async: the API queues the frame "
              "and answers at once.")
@click.option("--buffer-frames", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Frames kept in memory while the API cannot be reached; beyond, the oldest "
              "are dropped (and counted).")
@click.option("--api-url", default=None,
              help="The framewatch API [default: http://127.0.0.1:8000].")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding the API key [default: the key in FRAMEWATCH_AGENT_KEY]. There "
              "is no option for the key itself: it would show in `ps`.")
@click.option("--status-port", type=click.IntRange(1, 65535), default=None,
              help="Serve the status as JSON on http://127.0.0.1:PORT/status.")
@click.option("--log-interval", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds between status lines in the log [default: 30].")
@click.pass_context
def agent(ctx: click.Context, /, config_file: Path | None, **options: Any) -> None:
    """Send camera frames to the API: RTSP/HTTP/MJPEG streams, video files, folders of images
    or snapshot URLs.

    Grabs --fps frames a second, skips those that did not change, and posts the others to
    /api/v1/detections/send-frame with an `agent` API key (`framewatch keys create --role
    agent --name gate-agent --camera gate`). It reconnects to a dropped stream with a growing
    back-off, keeps frames while the API is away, honours 429 Retry-After, and logs its status
    every --log-interval seconds. Several cameras: --config cameras.yaml.
    """
    from framewatch.agent.config import AgentConfigError, load_key

    try:
        config = _agent_config(ctx, config_file, options)
        key = load_key(config.key_file)
    except AgentConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _run_until_stopped(config, key)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                               ParameterSource.ENVIRONMENT)


def _agent_config(ctx: click.Context, config_file: Path | None,
                  options: dict[str, Any]) -> AgentConfig:
    from framewatch.agent.config import build_config, load_config_file

    overrides = {field: options[option.removeprefix("--").replace("-", "_")]
                 for field, option in AGENT_OPTIONS.items()}
    overrides = {field: value for field, value in overrides.items() if value is not None}
    if config_file is not None:
        given = [flag for name, flag in CAMERA_OPTIONS.items()
                 if _given(ctx, name)]
        if given:
            raise click.UsageError(f"{', '.join(given)}: the cameras come from --config; "
                                   "set these in its camera entries")
        return build_config({**load_config_file(config_file), **overrides})
    missing = [flag for name, flag in (("camera_id", "--camera-id"), ("source", "--source"))
               if options[name] is None]
    if missing:
        raise click.UsageError(f"give {' and '.join(missing)} (or --config with a list of "
                               "cameras)")
    camera = {name: options[name] for name in CAMERA_OPTIONS if options[name] is not None}
    names = {f"cameras.0.{name}": flag for name, flag in CAMERA_OPTIONS.items()}
    names.update(AGENT_OPTIONS)
    return build_config({**overrides, "cameras": [camera]}, names)


def _run_until_stopped(config: AgentConfig, key: str) -> None:
    from framewatch.agent.runner import Agent

    # One line per frame sent is noise beside the agent's own status lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def run() -> None:
        agent = Agent(config, key)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        names = ", ".join(camera.camera_id for camera in config.cameras)
        log.info("framewatch agent: camera %s to %s", names, config.api_url)
        running = asyncio.create_task(agent.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not running.done():
            log.info("stopping")
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(run())
