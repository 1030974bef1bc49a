"""deploy/ stays true to the code: there is no Docker engine here to run the compose file, so
every command it (and each systemd unit) runs is parsed by the real CLI, and every variable it
sets must be a framewatch setting."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from framewatch.cli import main
from framewatch.core.config import Settings

DEPLOY = Path(__file__).parent.parent / "deploy"
SETTINGS = {f"FRAMEWATCH_{name.upper()}" for name in Settings.model_fields}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def parses(argv: list[str]) -> click.Command:
    """The framewatch sub-command `argv` names, after click parsed all its options."""
    assert argv[0] == "framewatch", argv
    context = main.make_context("framewatch", argv[1:], resilient_parsing=False)
    command: click.Command | None = main
    args = _remaining(context)
    while isinstance(command, click.Group):
        name, command, args = command.resolve_command(context, args)
        assert command is not None, f"no command {name!r} in {argv}"
        context = command.make_context(name or "", list(args), parent=context)
        args = _remaining(context) if isinstance(command, click.Group) else []
    assert command is not None
    return command


def _remaining(context: click.Context) -> list[str]:
    # Click 8 keeps a group's sub-command name apart ("protected"); Click 9 will not.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*context.protected_args, *context.args]


def test_every_framewatch_service_runs_a_real_command() -> None:
    services = compose()["services"]
    ran = {name: parses(service["command"]).name for name, service in services.items()
           if service.get("command", [""])[0] == "framewatch"}
    assert ran == {"migrate": "migrate", "api-1": "serve", "api-2": "serve",
                   "worker-1": "worker", "worker-2": "worker", "beat": "beat"}


def test_the_compose_file_wires_what_docs_operations_describes() -> None:
    services = compose()["services"]
    assert {"nginx", "postgres", "redis"} <= set(services)
    env = services["api-1"]["environment"]
    assert set(env) <= SETTINGS, set(env) - SETTINGS
    assert env["FRAMEWATCH_BROKER_URL"].startswith("redis://redis:")
    assert env["FRAMEWATCH_DATABASE_URL"].startswith("postgresql+asyncpg://")
    # Every framewatch service shares the same settings and data volume.
    for name in ("api-2", "worker-1", "worker-2", "beat", "migrate"):
        assert services[name]["environment"] == env
        assert services[name]["volumes"] == services["api-1"]["volumes"]


def test_nginx_balances_the_api_services_and_passes_websockets() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    upstream = set(re.findall(r"server (\S+):8000;", conf))
    assert upstream == {"api-1", "api-2"} <= set(compose()["services"])
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "X-Forwarded-For" in conf and "X-Request-ID" in conf


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")),
                         ids=lambda path: path.name)
def test_systemd_units_run_real_commands(unit: Path) -> None:
    lines = [line.split("=", 1)[1] for line in unit.read_text().splitlines()
             if line.startswith(("ExecStart=", "ExecStartPre="))]
    assert lines
    for line in lines:
        argv = shlex.split(line.replace("%i", "8001"))
        assert argv[0].endswith("/bin/framewatch")
        parses(["framewatch", *argv[1:]])
    assert "EnvironmentFile=/etc/framewatch/framewatch.env" in unit.read_text()


def test_the_environment_file_names_only_settings() -> None:
    names = {line.split("=", 1)[0].lstrip("# ").strip()
             for line in (DEPLOY / "systemd" / "framewatch.env").read_text().splitlines()
             if "=" in line and line.lstrip("# ").startswith("FRAMEWATCH_")}
    assert names and names <= SETTINGS, names - SETTINGS
