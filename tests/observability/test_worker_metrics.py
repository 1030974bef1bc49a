"""`framewatch worker --metrics-port`: a prefork worker's pool processes each count what they
run; the worker's main process serves the sum (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.observability.test_metrics import parse, value
from tests.queue.test_celery_worker import FAST, database, flaky, redis_broker
from tests.support.flaky_provider import FlakyProvider
from tests.support.processes import celery_cluster
from tests.support.servers import free_port

__all__ = ["database", "flaky", "redis_broker"]


def scrape_worker(url: str, within: float = 60.0) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response.text
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no metrics at {url}"
        time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_prefork_worker_serves_the_sum_of_its_pool_processes(
    tmp_path: Path, database: str, redis_broker: str, flaky: tuple[FlakyProvider, str]
) -> None:
    port = free_port()
    async with celery_cluster(tmp_path, database, redis_broker, flaky, **FAST) as cluster:
        worker = cluster.processes.start("worker", "worker", "--concurrency=2",
                                         f"--metrics-port={port}")
        await cluster.wait_for_workers(worker)
        await cluster.send(20)
        await cluster.drained(within=120)
        url = f"http://127.0.0.1:{port}/metrics"
        samples = parse(scrape_worker(url))
        pool = worker.group_pids() - {worker.pid}

    assert len(pool) == 2
    done = value(samples, "framewatch_tasks_total", task="process_detection_frame",
                 outcome="done")
    assert done == 20
    assert value(samples, "framewatch_frames_processed_total", camera="gate",
                 provider="flaky") == 20
    # The flaky provider finds one person in every frame.
    assert value(samples, "framewatch_detections_total", camera="gate", type="person") == 20
    assert value(samples, "framewatch_provider_latency_seconds_count", provider="flaky") == 20
    assert flaky[0].calls == 20
