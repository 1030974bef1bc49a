"""`framewatch serve`, `migrate` and `provider-server`."""

from __future__ import annotations

import logging

import click

from framewatch import __version__
from framewatch.cli.common import check_schema, run_migrate, run_with_settings, serve_app
from framewatch.core.config import Settings


@click.command()
@click.option("--host", default=None, help="Address to listen on [default: FRAMEWATCH_HOST].")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port [default: FRAMEWATCH_PORT].")
@click.option("--migrate/--no-migrate", "run_migrations", default=False,
              help="Apply database migrations before serving.")
def serve(host: str | None, port: int | None, run_migrations: bool) -> None:
    """Serve the API (and the docs at /docs).

    Once listening, prints the URL and the admin API key saved in <data_dir>/admin-api-key
    (mode 0600), which the first start creates; a key set in FRAMEWATCH_ADMIN_API_KEY is used
    instead, and not printed.
    """
    from framewatch.app import create_app
    from framewatch.auth.service import AdminKeyBootstrap

    settings = Settings()
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    if run_migrations:
        run_migrate(settings, "head")
    else:
        run_with_settings(check_schema)
    app = create_app(settings)
    configured = settings.admin_api_key

    def announce(url: str) -> None:
        bootstrap: AdminKeyBootstrap = app.state.admin_key
        click.echo(f"framewatch {__version__} serving on {url}  (docs: {url}/docs)")
        if bootstrap.key is None:
            click.echo("admin API key: not shown; admin keys exist (`framewatch keys list`)")
        elif configured is not None and bootstrap.key == configured.get_secret_value():
            # The operator knows it: do not copy a configured secret into logs.
            click.echo("admin API key: the one in FRAMEWATCH_ADMIN_API_KEY")
        else:
            click.echo(f"admin API key: {bootstrap.key}  (from {bootstrap.source})")

    serve_app(app, host, port, settings.log_level.lower(), announce, settings.ws_ping_seconds,
              settings.trusted_proxies, settings.shutdown_grace_seconds)


@click.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--downgrade", is_flag=True, help="Go down to --revision (e.g. `base`).")
def migrate_command(revision: str, downgrade: bool) -> None:
    """Apply database migrations (SQLite or PostgreSQL, from FRAMEWATCH_DATABASE_URL).

    Creates the SQLite database under FRAMEWATCH_DATA_DIR when none is configured.
    """
    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    current = run_migrate(Settings(), revision, downgrade)
    click.echo(f"database at revision {current or 'base'}")


@click.command("provider-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5001, show_default=True,
              help="Port to listen on.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.4, show_default=True,
              help="Threshold when a request sends no min_confidence.")
def provider_server(host: str, port: int, min_confidence: float) -> None:
    """Serve the built-in detector over the DeepStack-compatible API
    (POST /v1/vision/detection and /v1/vision/face)."""
    from framewatch.providers.server import create_provider_server_app
    from framewatch.runtime import load_builtin_detector

    settings = Settings()
    app = create_provider_server_app(
        lambda: load_builtin_detector(settings.builtin_face_encodings),
        min_confidence=min_confidence,
    )

    def announce(url: str) -> None:
        click.echo(f"DeepStack-compatible detector on {url}/v1/vision/detection")

    serve_app(app, host, port, settings.log_level.lower(), announce)
