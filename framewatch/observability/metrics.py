"""Prometheus metrics. Each runtime has its own registry (several apps may share a process in
tests); counters are incremented where things happen, and what already lives elsewhere — cache
counters, WebSocket counters, the queue's state — is read when `/metrics` is scraped.

Several processes: each API process serves its own `/metrics` (scrape them all, e.g. one target
per instance). A Celery worker's prefork children share one directory of metric files
(`PROMETHEUS_MULTIPROC_DIR`, set by `framewatch worker --metrics-port`) that the worker's main
process serves, aggregated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "framewatch_http_requests", "HTTP requests by route, method and status.",
            ["route", "method", "status"], registry=r)
        self.http_latency = Histogram(
            "framewatch_http_request_duration_seconds", "HTTP request latency by route.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        # The labelled children of the two metrics above, by (route, method, status): looking
        # a child up through `labels()` costs more than the request's own counting.
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.frames_received = Counter(
            "framewatch_frames_received", "Frames accepted, by camera.", ["camera"], registry=r)
        self.frames_processed = Counter(
            "framewatch_frames_processed", "Frames whose detections were stored.",
            ["camera", "provider"], registry=r)
        self.frames_failed = Counter(
            "framewatch_frames_failed", "Provider calls for a frame that failed (sync errors and "
            "queue attempts).", ["camera", "provider"], registry=r)
        self.detections = Counter(
            "framewatch_detections", "Detections stored, by camera and type.",
            ["camera", "type"], registry=r)
        self.provider_latency = Histogram(
            "framewatch_provider_latency_seconds", "Provider call latency (successful calls).",
            ["provider"], buckets=LATENCY_BUCKETS, registry=r)
        self.provider_errors = Counter(
            "framewatch_provider_errors", "Failed provider calls by provider and kind "
            "(unreachable: timeouts, refused, 5xx; response: refused or unusable answers).",
            ["provider", "kind"], registry=r)
        self.queue_items = Gauge(
            "framewatch_queue_items", "Queue items by status (read at scrape time).",
            ["status"], registry=r)
        self.queue_oldest_pending = Gauge(
            "framewatch_queue_oldest_pending_seconds", "Age of the oldest pending item.",
            registry=r)
        self.tasks = Counter(
            "framewatch_tasks", "Queue items and periodic jobs run, by task and outcome.",
            ["task", "outcome"], registry=r)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._http_children.get(key)
        if children is None:
            children = self._http_children[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_latency.labels(route, method))
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)


class ReadAtScrape(Collector):
    """Exposes counters that live elsewhere (cache, WebSocket hub), read when scraped."""

    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return self._read()


def cache_metrics(stats: Callable[[], dict[str, dict[str, int]]]) -> ReadAtScrape:
    def read() -> Iterable[Metric]:
        families = {
            what: CounterMetricFamily(f"framewatch_cache_{what}", f"Cache {what} by kind.",
                                      labels=["kind"])
            for what in ("hits", "misses", "coalesced", "errors")
        }
        for kind, counts in stats().items():
            for what, family in families.items():
                family.add_metric([kind], counts.get(what, 0))
        return list(families.values())

    return ReadAtScrape(read)


def websocket_metrics(stats: Callable[[], dict[str, Any]]) -> ReadAtScrape:
    def read() -> Iterable[Metric]:
        figures = stats()
        connections = GaugeMetricFamily("framewatch_websocket_connections",
                                        "Open WebSocket connections of this process.")
        connections.add_metric([], figures.get("connections", 0))
        sent = CounterMetricFamily("framewatch_websocket_messages_sent",
                                   "Messages sent to WebSocket clients.")
        sent.add_metric([], figures.get("messages_sent", 0))
        dropped = CounterMetricFamily("framewatch_websocket_messages_dropped",
                                      "Messages not sent: their client was too slow.")
        dropped.add_metric([], figures.get("messages_dropped", 0))
        clients = CounterMetricFamily("framewatch_websocket_clients_dropped",
                                      "Clients disconnected for being too slow.")
        clients.add_metric([], figures.get("clients_dropped", 0))
        return [connections, sent, dropped, clients]

    return ReadAtScrape(read)


def record_processed(metrics: Metrics, camera: str, provider: str, latency_ms: float,
                     types: Iterable[str]) -> None:
    """A frame's detections were stored: count it, its detections, time the provider."""
    metrics.frames_processed.labels(camera, provider).inc()
    metrics.provider_latency.labels(provider).observe(latency_ms / 1000)
    for kind in types:
        metrics.detections.labels(camera, kind).inc()


def record_failed(metrics: Metrics, camera: str, provider: str | None, retryable: bool) -> None:
    """A provider call for a frame failed."""
    metrics.frames_failed.labels(camera, provider or "none").inc()
    if provider is not None:
        metrics.provider_errors.labels(provider, "unreachable" if retryable else "response").inc()
