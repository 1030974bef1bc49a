"""What the agent runs: the API to send to, its key, and the cameras (from flags or YAML)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framewatch.cameras.schemas import CameraId

log = logging.getLogger(__name__)

SourceKind = Literal["stream", "file", "folder", "snapshot"]
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
KEY_HELP = ("create one with `framewatch keys create --role agent --name gate-agent "
            "--camera gate`")


class AgentConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


class CameraConfig(BaseModel):
    """One camera: where its frames come from and how they are sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: CameraId
    source: str = Field(min_length=1, description="RTSP/HTTP stream URL, video file, folder of "
                        "images, or snapshot URL (with kind: snapshot).")
    kind: SourceKind | None = Field(
        default=None,
        description="stream, file, folder or snapshot; unset: folder for a directory, file for "
        "another path, stream for a URL (a snapshot URL must say kind: snapshot).",
    )
    fps: float = Field(default=2.0, gt=0, le=30, description="Frames grabbed per second.")
    change_threshold: float = Field(
        default=0.5, ge=0, le=100,
        description="Percent of the picture that must change for a frame to be sent; 0 sends "
        "every frame.",
    )
    loop: bool = Field(default=True, description="Replay a video file or folder from the start "
                       "when it ends (false: play it once).")
    mode: Literal["sync", "async"] = Field(
        default="sync", description="send-frame's mode: sync waits for the detections, async "
        "has the API queue the frame and answer at once.")
    buffer_frames: int = Field(default=50, ge=1, le=10_000,
                               description="Frames kept while the API cannot be reached.")
    jpeg_quality: int = Field(default=85, ge=10, le=100)

    @property
    def source_kind(self) -> SourceKind:
        if self.kind is not None:
            return self.kind
        if self.source.lower().startswith(STREAM_SCHEMES):
            return "stream"
        return "folder" if Path(self.source).is_dir() else "file"

    @property
    def is_local(self) -> bool:
        return self.source_kind in ("file", "folder")


class AgentConfig(BaseModel):
    """The whole agent: API, key file, status endpoint and cameras."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^\s/]+")
    key_file: Path | None = None
    status_port: int | None = Field(default=None, ge=1, le=65535)
    log_interval_seconds: float = Field(default=30.0, gt=0)
    reconnect_initial_seconds: float = Field(default=1.0, gt=0, le=60)
    reconnect_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    cameras: list[CameraConfig] = Field(min_length=1)

    @field_validator("api_url")
    @classmethod
    def _without_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        ids = [camera.camera_id for camera in cameras]
        twice = sorted({camera_id for camera_id in ids if ids.count(camera_id) > 1})
        if twice:
            raise ValueError(f"camera {', '.join(twice)} is listed more than once")
        return cameras


class AgentEnvironment(BaseSettings):
    """The one agent setting read from the environment: its API key (a key on the command line
    would show in `ps`)."""

    model_config = SettingsConfigDict(env_prefix="FRAMEWATCH_AGENT_", extra="ignore")

    key: SecretStr | None = None


def problems(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """`cameras.0.fps: Input should be greater than 0; ...`, without pydantic's URLs; `names`
    renames fields (to the command-line options that gave them)."""
    messages = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "config"
        messages.append(f"{(names or {}).get(field, field)}: {error['msg']}")
    return "; ".join(messages)


def build_config(values: dict[str, Any], names: dict[str, str] | None = None) -> AgentConfig:
    try:
        return AgentConfig.model_validate(values)
    except ValidationError as exc:
        raise AgentConfigError(problems(exc, names)) from None


def load_config_file(path: Path) -> dict[str, Any]:
    """The YAML file's mapping, with relative paths (key file, local sources) made relative to
    the file's folder rather than to wherever the agent was started."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AgentConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AgentConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AgentConfigError(f"{path} must hold a mapping with `cameras:` (see docs/agent.md)")
    base = path.resolve().parent
    if isinstance(data.get("key_file"), str):
        data["key_file"] = str(base / data["key_file"])
    for camera in data.get("cameras") or []:
        if isinstance(camera, dict) and isinstance(camera.get("source"), str):
            source = camera["source"]
            if not source.lower().startswith(STREAM_SCHEMES) and not Path(source).is_absolute():
                camera["source"] = str(base / source)
    return data


def load_key(key_file: Path | None, environment: AgentEnvironment | None = None) -> str:
    """The API key: from `key_file` when one is given, else from FRAMEWATCH_AGENT_KEY."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
            mode = key_file.stat().st_mode
        except OSError as exc:
            raise AgentConfigError(f"cannot read the key file {key_file}: {exc.strerror}") from None
        if not key:
            raise AgentConfigError(f"the key file {key_file} is empty; {KEY_HELP}")
        if mode & 0o077:
            log.warning("key file %s can be read by other users (mode %o): chmod 600 it",
                        key_file, mode & 0o777)
        return key
    secret = (environment or AgentEnvironment()).key
    if secret is None or not secret.get_secret_value().strip():
        raise AgentConfigError(
            f"no API key: set FRAMEWATCH_AGENT_KEY or give a key file; {KEY_HELP}"
        )
    return secret.get_secret_value().strip()
