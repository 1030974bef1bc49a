"""Helpers shared by the `framewatch` commands: settings, database checks, serving."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from framewatch.core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
STARTUP_FAILURE = 3  # uvicorn's exit status when the app or the socket cannot start


def run_with_settings(coro_fn: Callable[[Settings], Awaitable[T]]) -> T:
    async def run() -> T:
        return await coro_fn(Settings())

    return asyncio.run(run())


def validation_message(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """`name: problem; other: problem`, without pydantic's URLs or the values given."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in error["loc"]) or "value"
        problems.append(f"{(names or {}).get(field, field)}: {error['msg']}")
    return "; ".join(problems)


def validated(model: type[M], names: Mapping[str, str], **values: Any) -> M:
    try:
        return model(**values)
    except ValidationError as exc:
        raise click.BadParameter(validation_message(exc, names)) from None


def load_settings() -> Settings:
    """The settings, or a one-line error naming the FRAMEWATCH_* variable that is wrong."""
    try:
        settings = Settings()
    except ValidationError as exc:
        names = {field: f"FRAMEWATCH_{field.upper()}" for field in Settings.model_fields}
        raise click.ClickException(
            f"invalid configuration: {validation_message(exc, names)}"
        ) from None
    if not isinstance(logging.getLevelName(settings.log_level), int):
        raise click.ClickException(
            f"invalid configuration: FRAMEWATCH_LOG_LEVEL={settings.log_level!r} is not a logging "
            "level (DEBUG, INFO, WARNING, ERROR or CRITICAL)"
        )
    return settings


def database_name(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def missing_sqlite_file(settings: Settings) -> str | None:
    """The SQLite file the settings name when it does not exist (connecting would create it)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return None if Path(url.database or "").exists() else url.database


async def check_database(settings: Settings, engine: AsyncEngine) -> None:
    """Fail with what to do when the database is missing, unreachable or not migrated."""
    from sqlalchemy.exc import SQLAlchemyError

    from framewatch.core import migrate

    missing = missing_sqlite_file(settings)
    if missing:
        raise click.ClickException(f"no database at {missing}: run `framewatch migrate` first")
    try:
        current = await migrate.current_revision(engine)
    except (OSError, SQLAlchemyError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise click.ClickException(
            f"cannot open the database {database_name(settings)}: {reason}"
        ) from None
    head = migrate.head_revision()
    if current != head:
        raise click.ClickException(
            f"the database is at revision {current or 'none'}, the code needs {head}: "
            "run `framewatch migrate` first"
        )


def websocket_settings(ping_seconds: float) -> dict[str, Any]:
    """uvicorn's WebSocket settings for framewatch's API (also what the tests serve with)."""
    from framewatch.live.uvicorn_ws import FramewatchWebSocketProtocol

    return {
        # uvicorn's websockets protocol, offering the hub a way to write a live message's
        # frame, encoded once, to each client's socket (framewatch/live/uvicorn_ws.py).
        "ws": FramewatchWebSocketProtocol,
        # uvicorn pings every WebSocket client and drops those that do not answer in time.
        "ws_ping_interval": ping_seconds,
        "ws_ping_timeout": ping_seconds,
        # No per-message deflate: each connection has a compressor of its own, so every live
        # message would be compressed once per client (1,000 clients × 20 messages/s), and it
        # is sent to each as one text; a few hundred bytes of JSON a message are not worth it.
        "ws_per_message_deflate": False,
    }


def serve_app(app: Any, host: str, port: int, log_level: str,
              announce: Callable[[str], None], ws_ping_seconds: float = 20.0,
              trusted_proxies: str = "127.0.0.1", grace_seconds: float = 30.0) -> None:
    """Run `app` with uvicorn; `announce(url)` once the app has started and the port is bound."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                # What exists once the app has started (modules, models, schemas, the runtime)
                # lives as long as the process: kept out of the garbage collector's full
                # collections, which otherwise walk all of it (pauses of 50-100 ms that were
                # the p99 of statistics and other larger answers).
                gc.collect()
                gc.freeze()
                announce(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Close our WebSockets ourselves, with a reason, before uvicorn drops the
            # connections it still holds; then open requests get `grace_seconds`.
            runtime = getattr(getattr(app, "state", None), "runtime", None)
            if runtime is not None:
                await runtime.live.hub.close_all(within=min(grace_seconds, 5.0))
            await super().shutdown(sockets)

    # log_config=None: uvicorn's records go through framewatch's own logging set-up.
    server = Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, log_config=None,
                                   **websocket_settings(ws_ping_seconds),
                                   proxy_headers=True, forwarded_allow_ips=trusted_proxies,
                                   # SIGTERM: open requests get this long; WebSockets are closed
                                   # first, with 1012 ("service restart") and a reason, so
                                   # clients reconnect elsewhere.
                                   timeout_graceful_shutdown=round(grace_seconds)))
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


async def check_schema(settings: Settings) -> None:
    from framewatch.core.database import create_engine

    engine = create_engine(settings.resolved_database_url)
    try:
        await check_database(settings, engine)
    finally:
        await engine.dispose()


async def migrate_database(
    settings: Settings, revision: str, downgrade: bool = False
) -> str | None:
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


def run_migrate(settings: Settings, revision: str, downgrade: bool = False) -> str | None:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(migrate_database(settings, revision, downgrade))
    except CommandError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, SQLAlchemyError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise click.ClickException(
            f"cannot migrate the database {database_name(settings)}: {reason}"
        ) from None


async def with_session(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from framewatch.core.database import create_engine, create_session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        await check_database(settings, engine)
        async with create_session_factory(engine)() as session:
            result = await action(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def fail_on_domain_errors(fn: Callable[..., None]) -> Callable[..., None]:
    from functools import wraps

    from framewatch.core.errors import FramewatchError

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except FramewatchError as exc:
            raise click.ClickException(exc.detail) from None

    return wrapper


