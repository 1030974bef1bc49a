"""`framewatch agent` as a user runs it: several cameras from `--config cameras.yaml`, the
status served as JSON on 127.0.0.1 and logged, a clean stop on SIGTERM, and clear errors for
a configuration it cannot use."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from framewatch.cli import main
from tests.agent.media import DEMO_FRAMES, camera_server, copy_frames, sha256
from tests.agent.support import ApiServer
from tests.support.servers import free_port

FRAMEWATCH = str(Path(sys.executable).with_name("framewatch"))


def write_config(folder: Path, text: str) -> Path:
    path = folder / "cameras.yaml"
    path.write_text(text)
    return path


def agent_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEWATCH_")}
    env["FRAMEWATCH_DATA_DIR"] = str(tmp_path / "cli-data")
    return env


async def wait_for_status(url: str, process: asyncio.subprocess.Process, ready: Any,
                          within: float = 60.0) -> dict[str, Any]:
    """Poll the status endpoint until `ready(status)`; fail if the agent exits or time runs out."""
    deadline = time.monotonic() + within
    last: dict[str, Any] | str = "no answer yet"
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"the agent exited ({process.returncode})")
            try:
                last = (await client.get(url)).json()
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                if ready(last):
                    return last
            await asyncio.sleep(0.1)
    raise AssertionError(f"the status did not get there in {within} s: {last}")


async def http_status(method: str, url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.request(method, url)).status_code


def by_camera(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {camera["camera_id"]: camera for camera in status["cameras"]}


async def test_several_cameras_from_a_config_file(api: ApiServer, tmp_path: Path) -> None:
    site = tmp_path / "site"
    copy_frames(site / "gate-frames", range(3))
    (site / "agent.key").write_text(api.agent_key + "\n")
    (site / "agent.key").chmod(0o600)
    status_port = free_port()
    with camera_server() as camera:
        # Relative paths are relative to the file, whatever folder the agent starts in.
        config = write_config(site, f"""\
api_url: {api.url}/
key_file: agent.key
status_port: {status_port}
cameras:
  - camera_id: gate
    source: gate-frames
    fps: 10
    loop: false
  - camera_id: yard
    source: {camera.url}/snapshot.jpg
    kind: snapshot
    fps: 5
""")
        # The log goes to a file: a pipe nobody reads until the end could fill and block it.
        log_path = tmp_path / "agent.log"
        with log_path.open("w") as log_file:
            process = await asyncio.create_subprocess_exec(
                FRAMEWATCH, "agent", "--config", str(config), "--log-interval", "0.5",
                cwd=tmp_path, env=agent_env(tmp_path), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log_file,
            )
        try:
            url = f"http://127.0.0.1:{status_port}/status"
            status = await wait_for_status(url, process, lambda s: (
                by_camera(s)["gate"]["state"] == "finished" and by_camera(s)["gate"]["sent"] == 3
                and by_camera(s)["yard"]["sent"] == 1 and by_camera(s)["yard"]["skipped"] >= 5))
            assert status["api_url"] == api.url  # without the trailing slash
            assert status["agent"].startswith("framewatch-agent/")
            assert [c["camera_id"] for c in status["cameras"]] == ["gate", "yard"]
            gate, yard = by_camera(status)["gate"], by_camera(status)["yard"]
            assert (gate["kind"], gate["source"]) == ("folder", str(site / "gate-frames"))
            assert (gate["state"], gate["connected"], gate["api_reachable"]) == (
                "finished", False, True)
            assert (gate["grabbed"], gate["sent"], gate["skipped"], gate["dropped"],
                    gate["buffered"], gate["rejected"], gate["last_error"]) == (
                3, 3, 0, 0, 0, 0, None)
            # A snapshot that never changes: grabbed at 5 a second, sent once.
            assert (yard["kind"], yard["state"], yard["connected"]) == (
                "snapshot", "streaming", True)
            # Paced at 5 a second; a rate read over a short window may overshoot a little.
            assert 0 < yard["fps_in"] <= 5 * 1.5 and yard["fps_out"] > 0
            assert yard["skipped"] == yard["grabbed"] - 1 and yard["last_error"] is None

            assert await http_status("GET", f"http://127.0.0.1:{status_port}/other") == 404
            assert await http_status("POST", url) == 405

            camera.stop()  # the yard camera goes away
            status = await wait_for_status(url, process,
                                     lambda s: by_camera(s)["yard"]["failed_attempts"] >= 2)
            yard = by_camera(status)["yard"]
            assert (yard["state"], yard["connected"]) == ("reconnecting", False)
            assert yard["last_error"].startswith(
                f"snapshot {camera.url}/snapshot.jpg: ConnectError")
            assert yard["retry_in_seconds"] > 0

            camera.start()  # back, with the same picture: connected again, nothing new to send
            status = await wait_for_status(url, process,
                                           lambda s: by_camera(s)["yard"]["connected"])
            yard = by_camera(status)["yard"]
            assert (yard["state"], yard["reconnects"], yard["failed_attempts"]) == (
                "streaming", 1, 0)
            assert yard["sent"] == 1
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                raise
    log = log_path.read_text()
    assert process.returncode == 0, log
    assert f"framewatch agent: camera gate, yard to {api.url}" in log
    assert f"status on http://127.0.0.1:{status_port}/status" in log
    assert "camera gate: finished, in " in log
    assert "sent 3, skipped 0, dropped 0, buffered 0, rejected 0" in log
    assert "camera yard: reconnecting, in " in log
    assert "camera yard: streaming, in " in log
    assert f"last error: snapshot {camera.url}/snapshot.jpg: ConnectError" in log
    assert api.agent_key not in log

    stored = await api.frames()
    assert [f.sha256 for f in stored if f.camera_id == "gate"] == [
        sha256(DEMO_FRAMES[i].read_bytes()) for i in range(3)]
    assert [f.sha256 for f in stored if f.camera_id == "yard"] == [
        sha256(DEMO_FRAMES[0].read_bytes())]


async def test_one_camera_from_options_plays_a_folder_once(api: ApiServer,
                                                           tmp_path: Path) -> None:
    folder = copy_frames(tmp_path / "frames", range(4))[0].parent
    env = {**agent_env(tmp_path), "FRAMEWATCH_AGENT_KEY": api.agent_key}
    process = await asyncio.create_subprocess_exec(
        FRAMEWATCH, "agent", "--camera-id", "gate", "--source", str(folder), "--fps", "10",
        "--once", "--api-url", api.url, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 120)  # exits by itself
    assert process.returncode == 0, stderr.decode()
    assert "sent 4, skipped 0, dropped 0, buffered 0, rejected 0" in stderr.decode()
    assert [f.sha256 for f in await api.frames("gate")] == [
        sha256(DEMO_FRAMES[i].read_bytes()) for i in range(4)]


def run_agent(tmp_path: Path, *args: str, key: str | None = "fw_key") -> tuple[int, str]:
    env = agent_env(tmp_path)
    if key is not None:
        env["FRAMEWATCH_AGENT_KEY"] = key
    result = CliRunner().invoke(main, ["agent", *args], env=env, prog_name="framewatch")
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(("args", "code", "message"), [
    ((), 2, "Error: give --camera-id and --source (or --config with a list of cameras)"),
    (("--camera-id", "gate"), 2, "Error: give --source (or --config"),
    (("--camera-id", "gate", "--source", "x", "--fps", "0"), 2,
     "Invalid value for '--fps': 0.0 is not in the range 0<x<=30"),
    (("--camera-id", "Gate!", "--source", "rtsp://cam/1"), 1, "Error: --camera-id: "),
    (("--camera-id", "gate", "--source", "rtsp://cam/1", "--api-url", "ftp://x"), 1,
     "Error: --api-url: String should match pattern"),
])
def test_unusable_options_are_refused_before_anything_runs(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    exit_code, output = run_agent(tmp_path, *args)
    assert exit_code == code, output
    assert message in output


def test_a_config_file_is_checked_and_camera_options_cannot_be_mixed_in(tmp_path: Path) -> None:
    config = write_config(tmp_path, "cameras:\n  - camera_id: gate\n    source: rtsp://cam/1\n"
                                    "  - camera_id: gate\n    source: rtsp://cam/2\n    fps: 99\n")
    code, output = run_agent(tmp_path, "--config", str(config))
    assert code == 1
    assert "cameras.1.fps: Input should be less than or equal to 30" in output

    config.write_text("cameras:\n  - camera_id: gate\n    source: a\n"
                      "  - camera_id: gate\n    source: b\n")
    code, output = run_agent(tmp_path, "--config", str(config))
    assert (code, output) == (1, "Error: cameras: Value error, camera gate is listed more than "
                                 "once")

    code, output = run_agent(tmp_path, "--config", str(config), "--fps", "5", "--source", "x")
    assert code == 2
    assert "Error: --source, --fps: the cameras come from --config" in output

    config.write_text("- just a list\n")
    code, output = run_agent(tmp_path, "--config", str(config))
    assert (code, output) == (1, f"Error: {config} must hold a mapping with `cameras:` (see "
                                 "docs/agent.md)")


def test_the_key_must_come_from_somewhere(tmp_path: Path) -> None:
    code, output = run_agent(tmp_path, "--camera-id", "gate", "--source", "rtsp://cam/1",
                             key=None)
    assert code == 1
    assert output == ("Error: no API key: set FRAMEWATCH_AGENT_KEY or give a key file; create "
                      "one with `framewatch keys create --role agent --name gate-agent "
                      "--camera gate`")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    code, output = run_agent(tmp_path, "--camera-id", "gate", "--source", "rtsp://cam/1",
                             "--key-file", str(empty), key=None)
    assert code == 1 and f"Error: the key file {empty} is empty" in output


def test_the_help_says_what_the_options_do() -> None:
    result = CliRunner().invoke(main, ["agent", "--help"], prog_name="framewatch")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("--config FILE", "--api-url, --key-file, --status-port and --log-interval "
                  "override its values", "--camera-id", "--source", "stream|file|folder|snapshot",
                  "--fps", "[default: 2.0; 0<x<=30]", "--change-threshold", "[default: 0.5;",
                  "--loop / --once", "--mode [sync|async]", "--buffer-frames",
                  "[default: 50; 1<=x<=10000]", "FRAMEWATCH_AGENT_KEY", "--status-port",
                  "--log-interval", "framewatch keys create --role agent"):
        assert words in text, words


def test_docs_name_every_option_and_config_field() -> None:
    from framewatch.agent.config import AgentConfig, CameraConfig
    from framewatch.cli.agent import agent

    text = (Path(__file__).parents[2] / "docs" / "agent.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `--")]
    documented = {flag for line in table
                  for flag in re.findall(r"--[a-z-]+", line.split("|")[1])}
    options = {flag for param in agent.params for flag in [*param.opts, *param.secondary_opts]
               if flag.startswith("--") and flag != "--help"}
    assert documented == options
    for field in (*AgentConfig.model_fields, *CameraConfig.model_fields):
        assert f"`{field}`" in text, field
