"""`framewatch retention show|run`."""

from __future__ import annotations

import json

import click

from framewatch.cli.common import check_schema, load_settings, run_with_settings, with_session


@click.group()
def retention() -> None:
    """Show the retention policy, or apply it now (or as a dry run)."""


@retention.command("show")
def retention_show() -> None:
    """Print the retention policy (global and per camera) as JSON."""
    from framewatch.retention.policy import retention_policy

    settings = load_settings()
    policy = run_with_settings(lambda s: with_session(s, lambda db: retention_policy(db, settings)))
    click.echo(json.dumps(policy.model_dump(), indent=2))


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
def retention_run(dry_run: bool) -> None:
    """Apply the retention policy now and print what was (or would be) removed."""
    from framewatch.retention.service import cleanup_old_data
    from framewatch.runtime import Runtime

    async def run(settings: object) -> dict[str, object]:
        runtime = Runtime.create(load_settings())
        try:
            return await cleanup_old_data(runtime, dry_run=dry_run)
        finally:
            await runtime.close()

    run_with_settings(check_schema)
    report = run_with_settings(run)
    click.echo(json.dumps({"dry_run": dry_run, **report}, indent=2))
