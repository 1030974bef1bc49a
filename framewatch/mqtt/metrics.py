"""The MQTT publisher's counters on `/metrics`, read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from framewatch.observability.metrics import ReadAtScrape


def mqtt_metrics(stats: Callable[[], dict[str, Any]]) -> ReadAtScrape:
    def read() -> Iterable[Metric]:
        figures = stats()
        if not figures.get("enabled"):
            return []
        connected = GaugeMetricFamily("framewatch_mqtt_connected",
                                      "1 while this process is connected to the MQTT broker.")
        connected.add_metric([], 1 if figures["connected"] else 0)
        buffered = GaugeMetricFamily("framewatch_mqtt_messages_buffered",
                                     "MQTT messages waiting for the broker.")
        buffered.add_metric([], figures["buffered"])
        published = CounterMetricFamily("framewatch_mqtt_messages_published",
                                        "MQTT messages handed to the broker.")
        published.add_metric([], figures["published"])
        dropped = CounterMetricFamily("framewatch_mqtt_messages_dropped",
                                      "MQTT messages dropped: the buffer was full while the "
                                      "broker was unreachable.")
        dropped.add_metric([], figures["dropped"])
        return [connected, buffered, published, dropped]

    return ReadAtScrape(read)
