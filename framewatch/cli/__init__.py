"""The `framewatch` command: one module per group of commands, registered here."""

from __future__ import annotations

import click

from framewatch import __version__
from framewatch.cli.admin import cameras, keys, secret_key
from framewatch.cli.agent import agent
from framewatch.cli.common import load_settings
from framewatch.cli.queue import beat, queue, worker
from framewatch.cli.retention import retention
from framewatch.cli.server import migrate_command, provider_server, serve
from framewatch.observability.logs import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="framewatch")
def main() -> None:
    """framewatch: frames in, detections out.

    Configuration comes from FRAMEWATCH_* environment variables (see docs/configuration.md).
    """
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)


for command in (serve, migrate_command, provider_server, worker, beat, queue, retention, cameras,
                keys, secret_key):
    main.add_command(command)
main.add_command(agent)
