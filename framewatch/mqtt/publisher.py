"""The MQTT publisher of one process: a bounded buffer in front of a paho client that
reconnects by itself.

`offer` never blocks and never raises: messages go into a buffer of `FRAMEWATCH_MQTT_BUFFER_
MESSAGES` and are handed to paho while connected. While the broker is unreachable they wait
there; when it is full the oldest are dropped — counted, and logged at most every
`DROP_LOG_SECONDS`. paho's network thread connects in the background, retries every 1–5 s,
and on each (re)connection the buffer is flushed and `<prefix>/status` set to `online` (the
broker sets it `offline` when this process goes away: the client's will).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from framewatch.core.config import Settings
from framewatch.live.outbox import Outgoing
from framewatch.mqtt.topics import MqttMessage, TopicPlan

log = logging.getLogger(__name__)

DROP_LOG_SECONDS = 10.0
RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 5
KEEPALIVE_SECONDS = 30


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("FRAMEWATCH_MQTT_URL must be mqtt://host[:port] or mqtts://…")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)

    def __str__(self) -> str:  # never the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttPublisher:
    def __init__(self, settings: Settings) -> None:
        self.address = BrokerAddress.parse(settings.mqtt_url) if settings.mqtt_url else None
        self.plan = TopicPlan(settings.mqtt_topic_prefix, settings.mqtt_retain_last_seen,
                              settings.mqtt_event_type_set, settings.mqtt_discovery_prefix)
        self.capacity = settings.mqtt_buffer_messages
        self._buffer: deque[MqttMessage] = deque()
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connected = False
        self._closing = False
        self._last_drop_log = float("-inf")
        self.published = 0
        self.dropped = 0
        self.connections = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background (idempotent; a no-op without FRAMEWATCH_MQTT_URL)."""
        with self._lock:
            if self.address is None or self._client is not None:
                return
            client_id = f"framewatch-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            if self.address.username is not None:
                client.username_pw_set(self.address.username, self.address.password)
            if self.address.tls:
                client.tls_set()
            client.will_set(self.plan.status_topic, "offline", qos=1, retain=True)
            client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.connect_async(self.address.host, self.address.port, KEEPALIVE_SECONDS)
            client.loop_start()
            self._client = client
        log.info("MQTT: publishing to %s under %s/", self.address, self.plan.prefix)

    def offer(self, messages: Iterable[Outgoing]) -> None:
        """Publish committed live messages (framewatch/live/outbox.py); never blocks."""
        if self.address is None:
            return
        self.start()
        with self._lock:
            out = [m for message in messages for m in self.plan.messages_for(message)]
        self.send(out)

    def send(self, messages: list[MqttMessage]) -> None:
        dropped = 0
        with self._lock:
            for message in messages:
                if len(self._buffer) >= self.capacity:
                    self._buffer.popleft()
                    dropped += 1
                self._buffer.append(message)
            self.dropped += dropped
        if dropped:
            self._log_drops(dropped)
        self._flush()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"enabled": self.enabled, "connected": self._connected,
                    "published": self.published, "dropped": self.dropped,
                    "buffered": len(self._buffer), "connections": self.connections}

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is buffered (bounded), say `offline`, disconnect."""
        client = self._client
        if client is None:
            return
        self._closing = True
        deadline = time.monotonic() + timeout
        while self._connected and self._buffer and time.monotonic() < deadline:
            self._flush()
            time.sleep(0.02)
        if self._connected:
            info = client.publish(self.plan.status_topic, "offline", qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected = False
        self._closing = False

    def _flush(self) -> None:
        """Hand buffered messages to paho while connected, oldest first (paho's own lock is
        never taken while ours is held: its callbacks take ours)."""
        client = self._client
        while client is not None and self._connected:
            with self._lock:
                if not self._buffer:
                    return
                message = self._buffer.popleft()
            info = client.publish(message.topic, message.payload, qos=0, retain=message.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:  # the connection went meanwhile: keep it
                with self._lock:
                    self._buffer.appendleft(message)
                return
            with self._lock:
                self.published += 1

    def _log_drops(self, dropped: int) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_SECONDS:
            self._last_drop_log = now
            log.warning("MQTT broker %s unreachable and %d messages buffered: dropped the %d "
                        "oldest (%d dropped in all)", self.address, self.capacity, dropped,
                        self.dropped)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.address, reason)
            return
        with self._lock:
            self._connected = True
            self.connections += 1
            self.plan.announced.clear()  # announce again (the broker may have lost them)
        log.info("MQTT: connected to %s", self.address)
        client.publish(self.plan.status_topic, "online", qos=1, retain=True)
        self._flush()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: Any, _properties: Any) -> None:
        was = self._connected
        self._connected = False
        if was and not self._closing:
            log.warning("MQTT: disconnected from %s (%s); reconnecting", self.address, reason)
