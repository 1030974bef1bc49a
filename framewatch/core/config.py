"""The one settings object. Every option is an environment variable prefixed `FRAMEWATCH_`.

`docs/configuration.md` documents each field; a test checks the two agree.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRAMEWATCH_", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Folder for the SQLite database, stored frames, the generated secret key "
        "and the generated admin key.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL, e.g. `postgresql+asyncpg://user@host/db`. "
        "Default: SQLite at `<data_dir>/framewatch.db`.",
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=200,
        description="Database connections each process keeps open; as many again are opened "
        "for bursts.",
    )
    database_pool_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="How long a request waits for a free database connection before it is "
        "answered 503 (`database_busy`, with `Retry-After`).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for the shared cache and the live stream that WebSocket "
        "clients of every API process receive, e.g. `redis://127.0.0.1:6379/0`. Unset: both "
        "in process (one API process).",
    )
    host: str = Field(default="127.0.0.1", description="Address `framewatch serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of `framewatch serve`.")
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts provider API keys at rest (a Fernet key, or any passphrase "
        "from which one is derived). Unset: generated once into `<data_dir>/secret.key` (0600).",
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="When set, an admin API key with this value is made sure to exist at start. "
        "Unset: the first start creates one and writes it to `<data_dir>/admin-api-key` (0600).",
    )
    max_frame_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest accepted frame, in bytes."
    )
    max_frame_pixels: int = Field(
        default=40_000_000,
        ge=64,
        description="Largest accepted frame area (width × height), checked before decoding.",
    )
    max_frame_side: int = Field(
        default=10_000, ge=16, description="Largest accepted frame width or height, in pixels."
    )
    min_frame_side: int = Field(
        default=16, ge=1, description="Smallest accepted frame width or height, in pixels."
    )
    live_ttl_seconds: float = Field(
        default=3.0,
        gt=0,
        description="How long an answer to the same bytes from the same camera is served from "
        "the cache without calling the provider again, and how long "
        "`GET /api/v1/detections/live` is cached (new detections invalidate it at once).",
    )
    live_window_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How recent a camera's last processed frame must be to appear in "
        "`GET /api/v1/detections/live`.",
    )
    camera_state_ttl_seconds: float = Field(
        default=60.0, gt=0,
        description="How long `GET /api/v1/cameras/{id}/state` is cached (newly processed "
        "frames invalidate it).",
    )
    stats_ttl_seconds: float = Field(
        default=300.0, gt=0, description="How long `GET /api/v1/detections/statistics` is cached."
    )
    camera_offline_seconds: float = Field(
        default=300.0, gt=0,
        description="A camera that sent no frame for this long is shown offline.",
    )
    ws_buffer_messages: int = Field(
        default=256, ge=1, le=100_000,
        description="Messages queued for one WebSocket client; a client that falls further "
        "behind is disconnected (close code 4008) instead of slowing the others.",
    )
    ws_replay_messages: int = Field(
        default=10_000, ge=0, le=1_000_000,
        description="Live messages kept for clients that reconnect with `last_event_id`.",
    )
    ws_ping_seconds: float = Field(
        default=20.0, gt=0,
        description="Interval of WebSocket pings; a client that does not answer within the "
        "same time is disconnected.",
    )
    provider_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Default read timeout of a new HTTP provider."
    )
    provider_max_retries: int = Field(
        default=2, ge=0, le=10, description="Default retries of a new HTTP provider."
    )
    identify_faces: bool = Field(
        default=True,
        description="Encode every face any provider finds with the built-in encoder and match "
        "it against the persons gallery (about 100 ms per face on one core).",
    )
    face_match_threshold: float = Field(
        # Measured on the test photographs: one person 0.24-0.34 apart (three people, two
        # photos each), different people 0.62-0.81 (docs/persons.md).
        default=0.45, gt=0, le=2,
        description="Largest encoding distance at which a face is taken for a registered "
        "person (built-in encodings: one person ~0.25-0.35 apart, different people ~0.6-0.8).",
    )
    gallery_check_seconds: float = Field(
        default=1.0, ge=0, le=60,
        description="How often a process checks whether the persons gallery changed.",
    )
    provider_allow_private_networks: bool = Field(
        default=False,
        description="Allow providers at private, loopback and unique-local addresses "
        "(on-premise DeepStack, CompreFace…). Link-local and cloud-metadata addresses are "
        "always refused.",
    )
    provider_allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated host names and CIDR blocks providers may be at. Unset: "
        "any public address (plus private ones when allowed above).",
    )
    builtin_face_encodings: bool = Field(
        default=True,
        description="Whether the built-in detector computes a 128-d encoding for each face "
        "(about 100 ms per face on one core).",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker, e.g. `redis://127.0.0.1:6379/1` or "
        "`amqp://guest:guest@127.0.0.1:5672//`. Set: `framewatch serve` hands queue items to "
        "Celery workers (`framewatch worker`, `framewatch beat`). Unset: `serve` runs them in "
        "process.",
    )
    worker_concurrency: int = Field(
        default=2, ge=1, le=64,
        description="Queue items one in-process worker runs at once; also the default "
        "`--concurrency` of `framewatch worker`.",
    )
    worker_poll_seconds: float = Field(
        default=1.0, gt=0, le=60,
        description="How often an idle in-process worker looks for due items (new frames wake "
        "it at once).",
    )
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="How often a worker records that it is alive (shown in queue statistics).",
    )
    queue_max_attempts: int = Field(
        default=5, ge=1, le=100,
        description="Provider calls a queued frame gets before it is dead-lettered.",
    )
    queue_lease_seconds: float = Field(
        default=120.0, ge=1,
        description="How long a worker owns a claimed item; a worker that dies loses it after "
        "this. Keep it above the slowest provider's timeout × (retries + 1).",
    )
    queue_retry_base_seconds: float = Field(
        default=5.0, ge=0,
        description="First retry delay; it doubles with each attempt (with jitter).",
    )
    queue_retry_max_seconds: float = Field(
        default=600.0, ge=0, description="Longest retry delay."
    )
    queue_sweep_seconds: float = Field(
        default=5.0, gt=0,
        description="How often the sweeper (`process_detection_queue`, Celery mode) dispatches "
        "due and orphaned items.",
    )
    queue_redispatch_seconds: float = Field(
        default=60.0, gt=0,
        description="A due item whose last dispatch is older than this is dispatched again "
        "(recovers messages a broker lost).",
    )
    breaker_failure_threshold: int = Field(
        default=5, ge=1,
        description="Consecutive failures after which a provider's circuit opens and its items "
        "wait instead of spending attempts.",
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0,
        description="How long an open circuit pauses calls before one probe call is tried.",
    )
    provider_check_seconds: float = Field(
        default=60.0, gt=0,
        description="Interval of the provider health check (`test_detection_provider`).",
    )
    stats_interval_seconds: float = Field(
        default=60.0, gt=0,
        description="Interval of the statistics roll-up (`aggregate_detection_stats`).",
    )
    cleanup_interval_seconds: float = Field(
        default=3600.0, gt=0,
        description="Interval of the retention clean-up (`cleanup_old_detections`).",
    )
    retention_detections_days: int = Field(
        default=30, ge=0, description="Delete detections older than this; 0 keeps them forever."
    )
    retention_frames_days: int = Field(
        default=7, ge=0,
        description="Delete frame images older than this from disk (their detections stay); "
        "0 keeps them forever.",
    )
    retention_events_days: int = Field(
        default=90, ge=0, description="Delete audit events older than this; 0 keeps them forever."
    )
    cleanup_batch_size: int = Field(
        default=1000, ge=1, le=100_000,
        description="Rows the retention clean-up deletes per transaction.",
    )
    auth_cache_seconds: float = Field(
        default=2.0, ge=0, le=60,
        description="How long a process trusts a key it checked (a revoked or changed key is "
        "refused by every process within this time).",
    )
    ws_token_seconds: float = Field(
        default=300.0, gt=0, le=86_400,
        description="How long a WebSocket token from `POST /api/v1/auth/ws-token` is valid.",
    )
    max_json_bytes: int = Field(
        default=1024 * 1024, ge=1024,
        description="Largest JSON request body, except send-frame's (which is bounded by "
        "`FRAMEWATCH_MAX_FRAME_BYTES`).",
    )
    retention_face_encodings_days: int = Field(
        default=0, ge=0,
        description="Erase face encodings (biometric data) older than this from detections, "
        "keeping the detections; 0 keeps them as long as the detections.",
    )
    rate_limit_per_key_per_minute: int = Field(
        default=6000, ge=0,
        description="Requests one API key may make per minute, on any endpoint; 0: no limit.",
    )
    rate_limit_per_address_per_minute: int = Field(
        default=12000, ge=0,
        description="Requests one client address may make per minute; 0: no limit.",
    )
    rate_limit_send_frame_per_minute: int = Field(
        default=6000, ge=0,
        description="Frames one API key may send per minute (its own budget beside the "
        "key's); 0: no limit.",
    )
    rate_limit_auth_failures_per_minute: int = Field(
        default=30, ge=0,
        description="Failed authentications one address may make per minute before it gets "
        "429 instead of 401; 0: no limit.",
    )
    rate_limit_burst_seconds: float = Field(
        default=10.0, gt=0,
        description="Each limit allows bursts of this many seconds' worth of requests.",
    )
    trusted_proxies: str = Field(
        default="127.0.0.1",
        description="Comma-separated addresses of reverse proxies whose `X-Forwarded-For` gives "
        "the client address (for rate limits and audit), or `*`.",
    )
    cors_origins: str | None = Field(
        default=None,
        description="Comma-separated origins (e.g. `https://ops.example.com`) whose browser "
        "pages may call the API. Unset: same origin only.",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, le=600,
        description="On SIGTERM, how long in-flight requests and queue items may take to "
        "finish before the process stops (unfinished items are handed back to the queue).",
    )
    # --- Webhooks and MQTT (framewatch/webhooks, framewatch/mqtt; docs/webhooks.md) ---
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=100,
        description="Delivery attempts a webhook message gets before it is dead-lettered.",
    )
    webhook_retry_base_seconds: float = Field(
        default=10.0, ge=0,
        description="First retry delay of a failed webhook delivery; it doubles with each "
        "attempt (with jitter).",
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, ge=0, description="Longest retry delay of a webhook delivery."
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300,
        description="How long a webhook receiver has to answer one delivery.",
    )
    webhook_poll_seconds: float = Field(
        default=2.0, gt=0, le=60,
        description="Interval of the webhook delivery job (`deliver_webhooks`): how often due "
        "deliveries are looked for.",
    )
    webhook_retention_days: int = Field(
        default=7, ge=0,
        description="Delete delivered and dead webhook deliveries older than this; 0 keeps "
        "them forever.",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="MQTT broker that detections and events are published to, e.g. "
        "`mqtt://127.0.0.1:1883` (`mqtts://` for TLS, `mqtt://user:password@host` to log in). "
        "Unset: no MQTT.",
    )
    mqtt_topic_prefix: str = Field(
        default="framewatch",
        description="First level of every MQTT topic (`<prefix>/<camera>/<type>`).",
    )
    mqtt_buffer_messages: int = Field(
        default=1000, ge=1, le=1_000_000,
        description="MQTT messages kept while the broker is unreachable; beyond this the "
        "oldest are dropped (counted and logged).",
    )
    mqtt_retain_last_seen: bool = Field(
        default=True,
        description="Retain the `<prefix>/<camera>/state` and "
        "`<prefix>/<camera>/<type>/last_seen` topics, so that a client that subscribes later "
        "receives the latest at once.",
    )
    mqtt_event_types: str = Field(
        default="person.identified,provider.down,provider.recovered,queue.dead_letter,"
        "webhook.dead_letter",
        description="Comma-separated event types published to `<prefix>/events/<type>`; "
        "empty: none.",
    )
    mqtt_discovery_prefix: str | None = Field(
        default=None,
        description="Home Assistant MQTT discovery prefix (usually `homeassistant`): set, a "
        "binary sensor per camera and detection type is announced. Unset: no discovery.",
    )
    # --- end of webhooks and MQTT ---
    # --- the demo camera (framewatch/agent/demo.py) ---
    demo: bool = Field(
        default=False,
        description="Run a demo camera inside `framewatch serve`: camera `demo` (created if "
        "missing) is fed the street-scene frames shipped with framewatch, at 2 fps, through the "
        "camera agent with an `agent` key the server makes at each start. `make run` turns it "
        "on.",
    )
    # --- end of the demo camera ---
    log_level: str = Field(default="INFO", description="Python logging level.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` for people, `json` for one JSON object per line (log pipelines); "
        "both carry the request id.",
    )

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or any(c in value for c in "+#\x00"):
            raise ValueError("an MQTT topic prefix must be non-empty, without + # or NUL")
        return value

    @property
    def mqtt_event_type_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.mqtt_event_types.split(",") if t.strip())

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'framewatch.db').resolve()}"

    @property
    def cors_origin_list(self) -> list[str]:
        origins = (self.cors_origins or "").split(",")
        return [origin.strip() for origin in origins if origin.strip()]

    @property
    def frames_dir(self) -> Path:
        return self.data_dir / "frames"

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: a base64 frame in JSON plus room for the other fields."""
        return self.max_frame_bytes * 4 // 3 + 1024 * 1024
