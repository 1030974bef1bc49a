"""The `framewatch` command, run as real processes against a SQLite database in a tmp data dir.

`migrate`, `serve`, `provider-server`, `cameras` and `keys` run as subprocesses of the installed
`framewatch` script; only the `--help` texts go through click's CliRunner. Every process has a
deadline, and servers are stopped (or killed) when their test ends, however it ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from framewatch import __version__
from framewatch.cli import main
from framewatch.core import migrate
from tests.support.servers import free_port

FRAMEWATCH = Path(sys.executable).with_name("framewatch")
DATA = Path(__file__).parent / "data"
KEY = re.compile(r"fw_[A-Za-z0-9_-]{43}")
COMMAND_TIMEOUT = 60  # seconds for a command that does not serve
START_TIMEOUT = 60  # seconds for a server to answer (the detector takes a few seconds to load)
STOP_TIMEOUT = 20
HEAD = migrate.head_revision()


@pytest.fixture(autouse=True, scope="module")
def installed() -> None:
    assert FRAMEWATCH.exists(), f"{FRAMEWATCH} is missing: `make install-dev` installs it"


def cli_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without its FRAMEWATCH_* settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FRAMEWATCH_")}
    env.update(FRAMEWATCH_DATA_DIR=str(data_dir), FRAMEWATCH_LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


def framewatch(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FRAMEWATCH), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT, check=False)


def succeeds(env: dict[str, str], *args: str) -> str:
    """Run the command, check it succeeded quietly, and return its stdout."""
    result = framewatch(env, *args)
    assert result.returncode == 0, f"framewatch {' '.join(args)}: {result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(env: dict[str, str], *args: str, message: str, status: int = 1, stdin: str = "") -> str:
    """Run the command, check it failed with `message` on stderr and no traceback."""
    result = framewatch(env, *args, stdin=stdin)
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result.stderr


def refused(env: dict[str, str], *args: str, message: str, status: int = 1,
            stdin: str | None = None) -> str:
    """`fails`, in this process through CliRunner: for the error paths of the quick commands.

    An exception the command does not handle would be `result.exception` (and a traceback for a
    user), so the test requires the SystemExit of a handled error.
    """
    overlay: dict[str, str | None] = {k: None for k in os.environ
                                      if k.upper().startswith("FRAMEWATCH_") and k not in env}
    overlay.update(env)
    result = CliRunner(env=overlay).invoke(main, list(args), input=stdin, prog_name="framewatch")
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == status, result.output
    assert message in result.stderr
    return result.stderr


def tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows if not name.startswith("sqlite_")}


def alembic_versions(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [v for (v,) in connection.execute("SELECT version_num FROM alembic_version")]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    return cli_env(data_dir)


@pytest.fixture
def migrated(data_dir: Path, sqlite_template: Path) -> Path:
    """A data dir holding a database at head (a copy: `test_migrate_*` runs the command itself)."""
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "framewatch.db")
    return data_dir


# --- processes that keep running -------------------------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(f"exited {self.process.returncode} before {what}:\n"
                                     f"{self.stdout()}\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {START_TIMEOUT}s:\n{self.stderr()}")
            time.sleep(0.1)

    def wait_for_http(self, url: str) -> None:
        def answers() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        self.wait_until(answers, f"answer from {url}")

    def terminate(self) -> int:
        """SIGTERM, then the exit status; the test fails if it takes longer than STOP_TIMEOUT."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[Running]:
    """Start `framewatch *args`; whatever happens, it is not running after the block."""
    logs = tmp_path / f"proc-{time.monotonic_ns()}"
    logs.mkdir()
    out, err = logs / "stdout", logs / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([str(FRAMEWATCH), *args], env=env, stdout=stdout,
                                   stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        yield Running(process, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)


def assert_stopped_cleanly(server: Running, status: int) -> None:
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so that the parent sees
    # the usual "terminated by SIGTERM" status; 0 is accepted too (older uvicorn).
    assert status in (0, -signal.SIGTERM), server.stderr()
    log = server.stderr()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log and "ERROR" not in log


def get_cameras(url: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.get(f"{url}/api/v1/cameras", headers=headers, timeout=10)


# --- help -------------------------------------------------------------------------------------

HELP: dict[tuple[str, ...], list[str]] = {
    (): ["frames in, detections out", "FRAMEWATCH_", "docs/configuration.md"],
    ("serve",): ["Serve the API", "/docs", "--host", "FRAMEWATCH_HOST", "--port",
                 "FRAMEWATCH_PORT", "--migrate", "admin-api-key"],
    ("migrate",): ["database migrations", "--revision", "head", "--downgrade", "base"],
    ("provider-server",): ["DeepStack-compatible", "/v1/vision/detection", "/v1/vision/face",
                           "--port", "5001", "--min-confidence", "0.4"],
    ("cameras",): ["List, add, change and remove cameras", "add", "list", "set", "remove"],
    ("cameras", "list"): ["List cameras"],
    ("cameras", "add"): ["Add camera CAMERA_ID", "--name", "--location", "--provider-id",
                         "--disabled"],
    ("cameras", "set"): ["Change a camera", "--name", "--location", "--enable / --disable"],
    ("cameras", "remove"): ["Delete a camera", "frames", "--yes"],
    ("keys",): ["Create, list and revoke API keys", "create", "list", "revoke"],
    ("keys", "create"): ["print it once", "--role", "agent|viewer|operator|admin", "--name",
                         "--expires-in-days", "--camera"],
    ("keys", "list"): ["never their secrets"],
    ("keys", "revoke"): ["Revoke key KEY_ID"],
    ("worker",): ["Celery worker", "FRAMEWATCH_BROKER_URL", "--metrics-port", "--concurrency",
                  "FRAMEWATCH_WORKER_CONCURRENCY", "--pool"],
    ("agent",): ["Send camera frames to the API", "--config", "--camera-id", "--source",
                 "--fps", "--change-threshold", "Retry-After"],
    ("beat",): ["periodic jobs", "exactly one", "FRAMEWATCH_QUEUE_SWEEP_SECONDS"],
    ("queue",): ["processing queue", "stats", "retry-dead"],
    ("queue", "stats"): ["queue statistics", "JSON"],
    ("queue", "retry-dead"): ["Requeue every dead-lettered item", "--camera-id"],
    ("retention",): ["retention policy", "show", "run"],
    ("secret-key",): ["encrypts provider API keys", "rotate"],
    ("secret-key", "rotate"): ["Re-encrypt every provider API key", "--new-key",
                               "FRAMEWATCH_SECRET_KEY", "--yes"],
    ("retention", "show"): ["retention policy", "JSON"],
    ("retention", "run"): ["Apply the retention policy", "--dry-run"],
}


def all_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name)


def test_help_covers_every_command() -> None:
    assert sorted(all_commands(main)) == sorted(HELP)


@pytest.mark.parametrize("path", list(HELP), ids=lambda path: " ".join(path) or "framewatch")
def test_help(path: tuple[str, ...], tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], env=cli_env(tmp_path / "data"),
                                prog_name="framewatch")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: framewatch {' '.join(path)}".rstrip())
    text = " ".join(result.output.split())
    for words in HELP[path]:
        assert words in text, f"{words!r} not in the help of {path}"
    assert not (tmp_path / "data").exists(), "--help touched the data dir"


def test_help_and_version_as_a_process(env: dict[str, str], data_dir: Path) -> None:
    assert "Commands:" in succeeds(env, "--help")
    assert succeeds(env, "-h") == succeeds(env, "--help")
    assert re.fullmatch(r"framewatch, version \d+\.\d+\.\d+\S*\n", succeeds(env, "--version"))
    assert not data_dir.exists()


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_creates_the_database_at_head_and_downgrade_empties_it(
    env: dict[str, str], data_dir: Path
) -> None:
    database = data_dir / "framewatch.db"

    assert succeeds(env, "migrate") == f"database at revision {HEAD}\n"
    assert {"api_keys", "cameras", "frames", "detections", "detection_provider_configs",
            "detection_event_logs", "detection_processing_queue"} <= tables(database)
    assert alembic_versions(database) == [HEAD]
    # Again: nothing to do, same answer.
    assert succeeds(env, "migrate") == f"database at revision {HEAD}\n"

    assert succeeds(env, "migrate", "--downgrade", "--revision", "base") == (
        "database at revision base\n"
    )
    assert tables(database) == {"alembic_version"}
    assert alembic_versions(database) == []

    assert succeeds(env, "migrate", "--revision", "head") == f"database at revision {HEAD}\n"
    assert alembic_versions(database) == [HEAD]


def test_migrate_errors(env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    fails(env, "migrate", "--revision", "no-such-revision",
          message="Can't locate revision identified by 'no-such-revision'")

    closed_port = free_port()
    unreachable = cli_env(
        data_dir, FRAMEWATCH_DATABASE_URL=f"postgresql+asyncpg://fw:hunter2@127.0.0.1:{closed_port}/x"
    )
    stderr = fails(unreachable, "migrate", message="cannot migrate the database postgresql")
    assert "hunter2" not in stderr and "fw:***@" in stderr


@pytest.mark.postgres
def test_migrate_postgresql(data_dir: Path) -> None:
    from tests.conftest import postgres_url_or_skip

    env = cli_env(data_dir, FRAMEWATCH_DATABASE_URL=postgres_url_or_skip())
    try:
        assert succeeds(env, "migrate", "--downgrade", "--revision", "base") == (
            "database at revision base\n"
        )
        fails(env, "cameras", "list", message="the database is at revision none")
    finally:
        # Leave it at head, as the session's other PostgreSQL tests expect.
        assert succeeds(env, "migrate") == f"database at revision {HEAD}\n"
    assert "no cameras yet" in succeeds(env, "cameras", "list")
    assert not data_dir.joinpath("framewatch.db").exists()


# --- cameras ----------------------------------------------------------------------------------


def test_cameras(env: dict[str, str], migrated: Path) -> None:
    assert succeeds(env, "cameras", "list") == (
        "no cameras yet: `framewatch cameras add ID --name NAME`\n"
    )
    assert succeeds(env, "cameras", "add", "front-door", "--name", "Front door",
                    "--location", "porch") == "camera front-door added\n"
    assert succeeds(env, "cameras", "add", "yard", "--name", "Yard", "--disabled") == (
        "camera yard added\n"
    )
    refused(env, "cameras", "add", "front-door", "--name", "Again",
            message="Error: a camera with id 'front-door' already exists")
    refused(env, "cameras", "add", "Front Door", "--name", "x", status=2,
            message="Invalid value: CAMERA_ID: String should match pattern")
    refused(env, "cameras", "add", "gate", "--name", "Gate", "--provider-id", "999",
            message="Error: no provider with id 999")
    assert succeeds(env, "cameras", "list") == (
        "front-door\tFront door\tporch\tenabled\tprovider=default\n"
        "yard\tYard\t-\tdisabled\tprovider=default\n"
    )

    assert succeeds(env, "cameras", "set", "front-door", "--name", "Front gate",
                    "--location", "north", "--disable") == "camera front-door updated\n"
    assert succeeds(env, "cameras", "set", "yard", "--enable") == "camera yard updated\n"
    refused(env, "cameras", "set", "garage", "--name", "Garage",
            message="Error: no camera with id 'garage'")
    refused(env, "cameras", "set", "yard", "--name", "", status=2,
            message="--name: String should have at least 1 character")
    refused(env, "cameras", "set", "yard", status=2, message="nothing to change")
    assert succeeds(env, "cameras", "list") == (
        "front-door\tFront gate\tnorth\tdisabled\tprovider=default\n"
        "yard\tYard\t-\tenabled\tprovider=default\n"
    )

    # Without --yes it asks; answered no, it does nothing.
    fails(env, "cameras", "remove", "yard", stdin="n\n", message="Aborted")
    refused(env, "cameras", "remove", "garage", "--yes",
            message="Error: no camera with id 'garage'")
    assert succeeds(env, "cameras", "remove", "yard", "--yes") == "camera yard removed\n"
    assert succeeds(env, "cameras", "list") == (
        "front-door\tFront gate\tnorth\tdisabled\tprovider=default\n"
    )
    with sqlite3.connect(migrated / "framewatch.db") as connection:
        assert [r for (r,) in connection.execute("SELECT id FROM cameras")] == ["front-door"]


def test_commands_need_a_migrated_database(env: dict[str, str], data_dir: Path) -> None:
    fails(env, "cameras", "list",
          message=f"no database at {data_dir.resolve() / 'framewatch.db'}: "
                  "run `framewatch migrate` first")
    refused(env, "keys", "create", "--role", "admin", "--name", "x",
            message="run `framewatch migrate` first")
    assert not (data_dir / "framewatch.db").exists()

    succeeds(env, "migrate")
    succeeds(env, "migrate", "--downgrade", "--revision", "base")
    refused(env, "keys", "list",
            message=f"the database is at revision none, the code needs {HEAD}: "
                    "run `framewatch migrate` first")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FRAMEWATCH_PORT", "0", "FRAMEWATCH_PORT: Input should be greater than or equal to 1"),
        ("FRAMEWATCH_MAX_FRAME_BYTES", "many", "FRAMEWATCH_MAX_FRAME_BYTES: Input should be"),
        ("FRAMEWATCH_LOG_LEVEL", "chatty", "FRAMEWATCH_LOG_LEVEL='CHATTY' is not a logging level"),
    ],
)
def test_invalid_configuration_is_refused(
    data_dir: Path, name: str, value: str, message: str
) -> None:
    env = cli_env(data_dir, **{name: value})

    fails(env, "cameras", "list", message=f"Error: invalid configuration: {message}")


# --- keys and serve ---------------------------------------------------------------------------


def test_keys_and_a_running_server(env: dict[str, str], migrated: Path, tmp_path: Path) -> None:
    created = framewatch(env, "keys", "create", "--role", "operator", "--name", "gate-agent")
    assert created.returncode == 0, created.stderr
    operator_key = created.stdout.removesuffix("\n")
    assert KEY.fullmatch(operator_key), created.stdout  # stdout is the key and nothing else
    assert "store it now" in created.stderr and operator_key not in created.stderr
    viewer_key = succeeds(env, "keys", "create", "--role", "viewer", "--name", "kiosk",
                          "--expires-in-days", "30").strip()
    assert KEY.fullmatch(viewer_key) and viewer_key != operator_key
    refused(env, "keys", "create", "--role", "viewer", "--name", "gate-agent",
            message="Error: an API key named 'gate-agent' already exists")
    refused(env, "keys", "create", "--role", "root", "--name", "x", status=2,
            message="Invalid value for '--role'")

    listing = succeeds(env, "keys", "list")
    assert operator_key not in listing and viewer_key not in listing
    rows = [line.split("\t") for line in listing.splitlines()]
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
        ("1", "gate-agent", "operator", "active", "last used never"),
        ("2", "kiosk", "viewer", "active", "last used never"),
    ]
    assert rows[0][3] == operator_key[:8] + "…"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "FRAMEWATCH_PORT": str(port), "FRAMEWATCH_LOG_LEVEL": "INFO"}
    with running(tmp_path, server_env, "serve") as server:
        server.wait_for_http(f"{url}/healthz")
        server.wait_until(lambda: "admin API key" in server.stdout(), "announcement")

        # First start: the URL and a new admin key, saved 0600 next to a 0600 secret key.
        admin_file, secret_file = migrated / "admin-api-key", migrated / "secret.key"
        admin_key = admin_file.read_text().strip()
        assert KEY.fullmatch(admin_key)
        # The announcement comes first; uvicorn's access log follows on stdout.
        assert server.stdout().splitlines()[:2] == [
            f"framewatch {__version__} serving on {url}  (docs: {url}/docs)",
            f"admin API key: {admin_key}  (from {admin_file})",
        ]
        assert admin_file.stat().st_mode & 0o777 == 0o600
        assert secret_file.stat().st_mode & 0o777 == 0o600
        assert len(secret_file.read_text().strip()) == 44  # a Fernet key

        assert get_cameras(url, operator_key).status_code == 200
        assert get_cameras(url, operator_key).json() == []
        assert get_cameras(url, viewer_key).status_code == 200
        assert get_cameras(url, admin_key).status_code == 200
        assert get_cameras(url, None).status_code == 401
        assert get_cameras(url, "fw_" + "x" * 43).status_code == 401

        # The CLI and the server share the database.
        succeeds(env, "cameras", "add", "gate", "--name", "Gate")
        assert [c["id"] for c in get_cameras(url, viewer_key).json()] == ["gate"]

        assert succeeds(env, "keys", "revoke", "2") == "key 2 revoked\n"
        refused(env, "keys", "revoke", "99", message="Error: no API key with id 99")
        # The server trusts a key it checked for FRAMEWATCH_AUTH_CACHE_SECONDS (2 s).
        deadline = time.monotonic() + 10
        while (revoked := get_cameras(url, viewer_key)).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works after 10 s"
            time.sleep(0.1)
        assert revoked.status_code == 401
        assert revoked.json()["error"] == "unauthorized"
        assert get_cameras(url, operator_key).status_code == 200

        assert_stopped_cleanly(server, server.terminate())

    rows = [line.split("\t") for line in succeeds(env, "keys", "list").splitlines()]
    statuses = {row[1]: row[4] for row in rows}
    assert statuses == {"gate-agent": "active", "kiosk": "revoked", "admin": "active"}

    # A second start prints the saved admin key and creates no other.
    with running(tmp_path, server_env, "serve") as server:
        server.wait_for_http(f"{url}/healthz")
        assert f"admin API key: {admin_key}  (from {admin_file})" in server.stdout()
        assert get_cameras(url, admin_key).status_code == 200
        assert_stopped_cleanly(server, server.terminate())
    assert len(succeeds(env, "keys", "list").splitlines()) == 3


def test_serve_with_a_configured_admin_key(env: dict[str, str], data_dir: Path,
                                           tmp_path: Path) -> None:
    admin_key = "a-key-chosen-by-the-operator-0123456789"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "FRAMEWATCH_ADMIN_API_KEY": admin_key, "FRAMEWATCH_LOG_LEVEL": "INFO"}
    # --migrate creates the database; --port wins over FRAMEWATCH_PORT.
    server_env["FRAMEWATCH_PORT"] = str(free_port())
    with running(tmp_path, server_env, "serve", "--migrate", "--port", str(port)) as server:
        server.wait_for_http(f"{url}/healthz")
        server.wait_until(lambda: "admin API key" in server.stdout(), "announcement")

        assert server.stdout().splitlines()[:2] == [
            f"framewatch {__version__} serving on {url}  (docs: {url}/docs)",
            "admin API key: the one in FRAMEWATCH_ADMIN_API_KEY",
        ]
        assert admin_key not in server.stdout() + server.stderr()
        assert get_cameras(url, admin_key).status_code == 200
        created = httpx.post(f"{url}/api/v1/cameras", json={"id": "door", "name": "Door"},
                             headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
        assert created.status_code == 201, created.text
        assert get_cameras(url, admin_key + "x").status_code == 401
        assert not (data_dir / "admin-api-key").exists()
        assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
        assert_stopped_cleanly(server, server.terminate())


def test_serve_refuses_an_unmigrated_database(env: dict[str, str], data_dir: Path) -> None:
    fails(env, "serve", "--port", str(free_port()),
          message="no database at {}: run `framewatch migrate` first".format(
              data_dir.resolve() / "framewatch.db"))
    assert not (data_dir / "framewatch.db").exists()

    succeeds(env, "migrate", "--downgrade", "--revision", "base")
    stderr = fails(env, "serve", "--port", str(free_port()),
                   message=f"Error: the database is at revision none, the code needs {HEAD}: "
                           "run `framewatch migrate` first")
    assert "Uvicorn running" not in stderr
    assert not (data_dir / "admin-api-key").exists()


def test_serve_reports_a_port_in_use(env: dict[str, str], migrated: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = framewatch(env, "serve", "--port", str(port))

    assert result.returncode == 3
    assert "address already in use" in result.stderr.lower()
    assert "serving on" not in result.stdout


def test_serve_refuses_an_invalid_port(env: dict[str, str]) -> None:
    fails(env, "serve", "--port", "70000", status=2,
          message="Invalid value for '--port': 70000 is not in the range 1<=x<=65535")


# --- provider-server --------------------------------------------------------------------------


def test_provider_server(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {**env, "FRAMEWATCH_BUILTIN_FACE_ENCODINGS": "false",
                  "FRAMEWATCH_LOG_LEVEL": "INFO"}
    with running(tmp_path, server_env, "provider-server", "--port", str(port)) as server:
        server.wait_for_http(f"{url}/v1/status")
        assert server.stdout().splitlines()[0] == (
            f"DeepStack-compatible detector on {url}/v1/vision/detection"
        )

        image = (DATA / "astronaut.jpg").read_bytes()
        response = httpx.post(f"{url}/v1/vision/detection", timeout=60,
                              files={"image": ("astronaut.jpg", image, "image/jpeg")})
        assert response.status_code == 200
        body = response.json()
        assert body["success"] is True
        persons = [p for p in body["predictions"] if p["label"] == "person"]
        assert persons, body
        person = persons[0]
        assert person["confidence"] >= 0.4  # the default --min-confidence
        assert 0 <= person["x_min"] < person["x_max"] <= 512
        assert 0 <= person["y_min"] < person["y_max"] <= 512
        assert person["y_max"] - person["y_min"] > 256  # she fills the frame's height

        missing = httpx.post(f"{url}/v1/vision/detection", timeout=10)
        assert missing.status_code == 400
        assert missing.json() == {"success": False, "error": "No valid image file found",
                                  "duration": 0}

        assert_stopped_cleanly(server, server.terminate())
    assert not (tmp_path / "data").exists(), "provider-server needs no data dir"


def test_provider_server_min_confidence(env: dict[str, str], tmp_path: Path) -> None:
    fails(env, "provider-server", "--min-confidence", "1.5", status=2,
          message="Invalid value for '--min-confidence'")
