"""The `framewatch` command."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click

from framewatch import __version__
from framewatch.core.config import Settings

T = TypeVar("T")


def _run(coro_fn: Callable[[Settings], Awaitable[T]]) -> T:
    async def run() -> T:
        return await coro_fn(Settings())

    return asyncio.run(run())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="framewatch")
def main() -> None:
    """framewatch: frames in, detections out.

    Configuration comes from FRAMEWATCH_* environment variables (see docs/configuration.md).
    """
    logging.basicConfig(level=Settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--host", default=None, help="Address to listen on [default: FRAMEWATCH_HOST].")
@click.option("--port", type=int, default=None, help="Port [default: FRAMEWATCH_PORT].")
@click.option("--migrate/--no-migrate", "run_migrations", default=False,
              help="Apply database migrations before serving.")
def serve(host: str | None, port: int | None, run_migrations: bool) -> None:
    """Serve the API (and the docs at /docs)."""
    import uvicorn

    from framewatch.app import create_app

    settings = Settings()
    host, port = host or settings.host, port or settings.port
    if run_migrations:
        asyncio.run(_migrate(settings, "head"))
    app = create_app(settings)

    @app.on_event("startup")  # printed once the admin key is known
    async def _announce() -> None:
        bootstrap = app.state.admin_key
        click.echo(f"framewatch {__version__} serving on http://{host}:{port}  (docs: /docs)")
        if bootstrap.key:
            click.echo(f"admin API key: {bootstrap.key}  (from {bootstrap.source})")
        else:
            click.echo("admin API key: not shown; admin keys exist (`framewatch keys list`)")

    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


async def _migrate(settings: Settings, revision: str, downgrade: bool = False) -> str | None:
    from framewatch.core import migrate
    from framewatch.core.database import create_engine

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    try:
        if downgrade:
            await migrate.downgrade(engine, revision)
        else:
            await migrate.upgrade(engine, revision)
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


@main.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--downgrade", is_flag=True, help="Go down to --revision (e.g. `base`).")
def migrate_command(revision: str, downgrade: bool) -> None:
    """Apply database migrations (SQLite or PostgreSQL, from FRAMEWATCH_DATABASE_URL)."""
    current = asyncio.run(_migrate(Settings(), revision, downgrade))
    click.echo(f"database at revision {current or 'base'}")


@main.command("provider-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5001, show_default=True)
@click.option("--min-confidence", type=float, default=0.4, show_default=True)
def provider_server(host: str, port: int, min_confidence: float) -> None:
    """Serve the built-in detector over the DeepStack-compatible API
    (POST /v1/vision/detection and /v1/vision/face)."""
    import uvicorn

    from framewatch.providers.server import create_provider_server_app
    from framewatch.runtime import load_builtin_detector

    settings = Settings()
    app = create_provider_server_app(
        lambda: load_builtin_detector(settings.builtin_face_encodings),
        min_confidence=min_confidence,
    )
    click.echo(f"DeepStack-compatible detector on http://{host}:{port}/v1/vision/detection")
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


async def _with_session(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from framewatch.core.database import create_engine, create_session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_session_factory(engine)() as session:
            result = await action(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def _fail_on_domain_errors(fn: Callable[..., None]) -> Callable[..., None]:
    from functools import wraps

    from framewatch.core.errors import FramewatchError

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except FramewatchError as exc:
            raise click.ClickException(exc.detail) from None

    return wrapper


@main.group()
def cameras() -> None:
    """List, add, change and remove cameras."""


@cameras.command("list")
def cameras_list() -> None:
    """List cameras."""
    from framewatch.cameras.service import list_cameras

    rows = _run(lambda s: _with_session(s, list_cameras))
    for camera in rows:
        state = "enabled" if camera.enabled else "disabled"
        provider = camera.provider_id if camera.provider_id is not None else "default"
        click.echo(f"{camera.id}\t{camera.name}\t{camera.location or '-'}\t{state}\t"
                   f"provider={provider}")
    if not rows:
        click.echo("no cameras yet: `framewatch cameras add ID --name NAME`")


@cameras.command("add")
@click.argument("camera_id")
@click.option("--name", required=True, help="A name people read.")
@click.option("--location", default=None, help="Where the camera is.")
@click.option("--provider-id", type=int, default=None, help="Its own provider (default: none).")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@_fail_on_domain_errors
def cameras_add(camera_id: str, name: str, location: str | None, provider_id: int | None,
                disabled: bool) -> None:
    """Add camera CAMERA_ID (a slug such as front-door)."""
    from pydantic import ValidationError

    from framewatch.cameras.schemas import CameraCreate
    from framewatch.cameras.service import create_camera

    try:
        data = CameraCreate(id=camera_id, name=name, location=location, enabled=not disabled,
                            provider_id=provider_id)
    except ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    _run(lambda s: _with_session(s, lambda db: create_camera(db, data, actor="cli")))
    click.echo(f"camera {camera_id} added")


@cameras.command("set")
@click.argument("camera_id")
@click.option("--name", default=None)
@click.option("--location", default=None)
@click.option("--enable/--disable", "enabled", default=None)
@_fail_on_domain_errors
def cameras_set(camera_id: str, name: str | None, location: str | None,
                enabled: bool | None) -> None:
    """Change a camera's name, location or enabled state."""
    from framewatch.cameras.schemas import CameraPatch
    from framewatch.cameras.service import update_camera

    values = {k: v for k, v in {"name": name, "location": location, "enabled": enabled}.items()
              if v is not None}
    patch = CameraPatch(**values)
    _run(lambda s: _with_session(s, lambda db: update_camera(db, camera_id, patch, actor="cli")))
    click.echo(f"camera {camera_id} updated")


@cameras.command("remove")
@click.argument("camera_id")
@click.confirmation_option(prompt="Delete the camera with all its frames and detections?")
@_fail_on_domain_errors
def cameras_remove(camera_id: str) -> None:
    """Delete a camera with its frames, detections and queue items."""
    from framewatch.cameras.service import delete_camera
    from framewatch.frames.service import delete_unreferenced_files
    from framewatch.frames.storage import FrameStore

    async def remove(settings: Settings) -> None:
        paths = await _with_session(settings,
                                    lambda db: delete_camera(db, camera_id, actor="cli"))
        await _with_session(
            settings,
            lambda db: delete_unreferenced_files(db, FrameStore(settings.frames_dir), paths),
        )

    _run(remove)
    click.echo(f"camera {camera_id} removed")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@click.option("--name", required=True, help="A unique name, e.g. gate-agent.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None)
@_fail_on_domain_errors
def keys_create(role: str, name: str, expires_in_days: int | None) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from framewatch.auth.service import Role, create_key
    from framewatch.core.database import utcnow

    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    _, key = _run(lambda s: _with_session(
        s, lambda db: create_key(db, name=name, role=Role(role), expires_at=expires, actor="cli")
    ))
    click.echo(key)
    click.echo(f"(role {role}, name {name}; store it now: it cannot be shown again)", err=True)


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    from framewatch.auth.service import list_keys

    for row in _run(lambda s: _with_session(s, list_keys)):
        status = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.id}\t{row.name}\t{row.role}\t{row.prefix}…\t{status}\t"
                   f"last used {row.last_used_at or 'never'}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@_fail_on_domain_errors
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID."""
    from framewatch.auth.service import revoke_key

    _run(lambda s: _with_session(s, lambda db: revoke_key(db, key_id, actor="cli")))
    click.echo(f"key {key_id} revoked")
