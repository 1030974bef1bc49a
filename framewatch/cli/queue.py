"""`framewatch worker`, `framewatch beat` and `framewatch queue ...`."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import click

from framewatch.cli.common import (
    check_schema,
    fail_on_domain_errors,
    load_settings,
    run_with_settings,
    with_session,
)
from framewatch.core.config import Settings

NO_BROKER = (
    "FRAMEWATCH_BROKER_URL is not set. Without a broker `framewatch serve` runs the queue and the "
    "periodic jobs itself; set it (e.g. redis://127.0.0.1:6379/1 or "
    "amqp://guest:guest@127.0.0.1:5672//) to run them in Celery workers."
)


def serve_worker_metrics(folder: Path, host: str, port: int) -> None:
    """Multiprocess Prometheus metrics for a prefork worker (see framewatch/observability)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
    click.echo(f"worker metrics on http://{host}:{port}/metrics")


def _celery_settings() -> Settings:
    settings = load_settings()
    if not settings.broker_url:
        raise click.ClickException(NO_BROKER)
    run_with_settings(check_schema)
    return settings


@click.command()
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Worker processes [default: FRAMEWATCH_WORKER_CONCURRENCY].")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork",
              show_default=True, help="Celery execution pool.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics of the worker and its pool processes on this port "
              "(on FRAMEWATCH_HOST).")
def worker(concurrency: int | None, pool: str, metrics_port: int | None) -> None:
    """Run a Celery worker: queue items and on-demand tasks (needs FRAMEWATCH_BROKER_URL).

    Tasks are acknowledged after they ran and each process reserves one message at a time;
    run as many workers, on as many machines, as the load needs. SIGTERM lets running tasks
    finish first.
    """
    settings = _celery_settings()
    if metrics_port is not None:
        # Before anything imports prometheus_client: the pool processes then write their metrics
        # to files in this folder, which the main process serves, aggregated.
        serve_worker_metrics(settings.data_dir / f"metrics-{os.getpid()}", settings.host,
                             metrics_port)

    from framewatch.queue.celery_app import QUEUE_NAME, create_celery

    app = create_celery(settings)
    app.worker_main([
        "worker",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--pool={pool}",
        f"--loglevel={settings.log_level}",
        f"--queues={QUEUE_NAME}",
        # Unique per process, so that several workers can share a host.
        f"--hostname=worker-{os.getpid()}@{socket.gethostname()}",
        "--without-gossip", "--without-mingle",
    ])


@click.command()
def beat() -> None:
    """Run Celery beat: the periodic jobs (sweeper, provider checks, statistics, retention).

    Run exactly one per deployment (needs FRAMEWATCH_BROKER_URL); intervals come from
    FRAMEWATCH_QUEUE_SWEEP_SECONDS, FRAMEWATCH_PROVIDER_CHECK_SECONDS,
    FRAMEWATCH_STATS_INTERVAL_SECONDS and FRAMEWATCH_CLEANUP_INTERVAL_SECONDS.
    """
    from framewatch.queue.celery_app import create_celery

    settings = _celery_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings)
    app.start([
        "beat",
        f"--loglevel={settings.log_level}",
        f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
    ])


@click.group()
def queue() -> None:
    """Inspect the processing queue and requeue dead-lettered items."""


@queue.command("stats")
def queue_stats_command() -> None:
    """Print the queue statistics as JSON (as GET /api/v1/detections/queue-stats)."""
    from framewatch.queue.stats import queue_stats

    mode = "celery" if load_settings().broker_url else "inprocess"
    stats = run_with_settings(lambda s: with_session(s, lambda db: queue_stats(db, mode)))
    click.echo(json.dumps(stats.model_dump(mode="json"), indent=2))


@queue.command("retry-dead")
@click.option("--camera-id", default=None, help="Only this camera's dead items.")
@fail_on_domain_errors
def retry_dead(camera_id: str | None) -> None:
    """Requeue every dead-lettered item with a fresh set of attempts.

    With a broker the sweeper dispatches them within FRAMEWATCH_QUEUE_SWEEP_SECONDS; without
    one, the running `framewatch serve` picks them up.
    """
    from framewatch.queue.service import requeue_dead

    ids = run_with_settings(lambda s: with_session(
        s, lambda db: requeue_dead(db, actor="cli", camera_id=camera_id)
    ))
    click.echo(f"{len(ids)} dead items requeued" + (f": {ids[:20]}" if ids else ""))
