"""Shared pieces of the MQTT tests: the broker's address (from FRAMEWATCH_TEST_MQTT_URL: unset,
the tests skip; set and the broker down, they fail), a paho subscriber that records what
arrives, a private Mosquitto for the tests that stop and start a broker, and cleanup of the
retained messages a test leaves on the shared broker."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.servers import free_port

MQTT_ENV = "FRAMEWATCH_TEST_MQTT_URL"
WAIT_SECONDS = 30.0


def broker_url_or_skip() -> str:
    """The test broker's URL, checked to answer; skips when FRAMEWATCH_TEST_MQTT_URL is unset."""
    url = os.environ.get(MQTT_ENV)
    if not url:
        pytest.skip(f"MQTT tests need {MQTT_ENV}=mqtt://127.0.0.1:1883 (`.ci/run` sets it)")
    host, port = host_port(url)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"{MQTT_ENV} is set but no MQTT broker answers at {host}:{port}: {exc}")
    return url


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def unique_prefix(name: str) -> str:
    """A topic prefix no other test (nor another run on the shared broker) uses."""
    return f"fwtest-{name}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Subscriber:
    """A paho client subscribed to `patterns`, recording every message it receives."""

    url: str
    patterns: tuple[str, ...]
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _subscribed: threading.Event = field(default_factory=threading.Event, repr=False)
    _client: mqtt.Client | None = field(default=None, repr=False)

    def start(self) -> Subscriber:
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"fwtest-sub-{uuid.uuid4().hex[:8]}")
        client.on_connect = lambda c, *_: c.subscribe([(p, 1) for p in self.patterns])
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.connect(*host_port(self.url), keepalive=30)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(WAIT_SECONDS):
            raise AssertionError(f"could not subscribe to {self.patterns} at {self.url}")
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain)))

    def drain(self, marker_topic: str) -> list[Received]:
        """Everything the broker had for us before now: a marker published on a topic we
        are subscribed to comes back after what was queued before it (one session is served
        in order), retained messages included."""
        assert self._client is not None
        marker = uuid.uuid4().hex.encode()
        self._client.publish(marker_topic, marker, qos=1)
        self.wait_for(lambda ms: any(m.payload == marker for m in ms), "the marker")
        return [m for m in self.received() if m.topic != marker_topic]

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.received() if m.topic == topic]

    def wait_for(self, check: Callable[[list[Received]], bool], what: str,
                 within: float = WAIT_SECONDS) -> list[Received]:
        deadline = time.monotonic() + within
        while True:
            messages = self.received()
            if check(messages):
                return messages
            if time.monotonic() > deadline:
                topics = sorted({m.topic for m in messages})
                raise AssertionError(f"{what}: not received in {within} s; got {topics}")
            time.sleep(0.05)

    def wait_for_topics(self, topics: set[str], within: float = WAIT_SECONDS) -> list[Received]:
        return self.wait_for(lambda ms: topics <= {m.topic for m in ms},
                             f"topics {sorted(topics)}", within)


@contextmanager
def subscribed(url: str, *patterns: str) -> Iterator[Subscriber]:
    subscriber = Subscriber(url, patterns).start()
    try:
        yield subscriber
    finally:
        subscriber.stop()


def retained(url: str, prefix: str) -> dict[str, Received]:
    """What a client subscribing to `<prefix>/#` now receives at once: the retained messages,
    by topic."""
    with subscribed(url, f"{prefix}/#") as late:
        messages = late.drain(f"{prefix}/_marker")
    assert all(m.retain for m in messages), [m.topic for m in messages if not m.retain]
    return {m.topic: m for m in messages}


def clear_retained(url: str, *prefixes: str) -> None:
    """Remove the retained messages under `prefixes` (an empty retained message deletes one),
    so that the shared broker does not keep what a test left."""
    topics: set[str] = set()
    for prefix in prefixes:
        topics |= set(retained(url, prefix))
    if not topics:
        return
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"fwtest-clean-{uuid.uuid4().hex[:8]}")
    client.connect(*host_port(url), keepalive=30)
    client.loop_start()
    try:
        for topic in sorted(topics):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(WAIT_SECONDS)
    finally:
        client.disconnect()
        client.loop_stop()


@contextmanager
def private_broker(port: int | None = None) -> Iterator[str]:
    """A Mosquitto of this test's own on 127.0.0.1 (for stopping and starting a broker without
    touching the shared one); yields its URL once it accepts connections."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        pytest.fail(f"{MQTT_ENV} is set but the mosquitto binary is not installed")
    port = port or free_port()
    process = subprocess.Popen([binary, "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not start on port {port}") from None
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
