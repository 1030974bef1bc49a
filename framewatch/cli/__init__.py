"""The `framewatch` command: one module per group of commands, registered here."""

from __future__ import annotations

import logging

import click

from framewatch import __version__
from framewatch.cli.admin import cameras, keys, secret_key
from framewatch.cli.common import load_settings
from framewatch.cli.queue import beat, queue, worker
from framewatch.cli.retention import retention
from framewatch.cli.server import migrate_command, provider_server, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="framewatch")
def main() -> None:
    """framewatch: frames in, detections out.

    Configuration comes from FRAMEWATCH_* environment variables (see docs/configuration.md).
    """
    logging.basicConfig(level=load_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic talks at INFO whenever the schema version is read; only `migrate` lets it.
    logging.getLogger("alembic").setLevel(logging.WARNING)


for command in (serve, migrate_command, provider_server, worker, beat, queue, retention, cameras,
                keys, secret_key):
    main.add_command(command)
