"""docs/configuration.md and `Settings` agree, and settings really come from FRAMEWATCH_* variables.

The table in the doc must have one row per field: its variable, its type with the field's bounds,
a default that parses to the field's default, and the field's description word for word.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import pytest
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from framewatch.core.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
PREFIX = "FRAMEWATCH_"
FIELDS: dict[str, FieldInfo] = dict(Settings.model_fields)
HEADER = ["Variable", "Type", "Default", "Description"]
TYPE_NAMES: dict[Any, str] = {
    int: "integer", float: "number", bool: "boolean", str: "string", Path: "path",
    SecretStr: "secret string",
}


def env_name(field: str) -> str:
    return PREFIX + field.upper()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FRAMEWATCH_* setting from the caller's shell, and a working directory without files."""
    for field in FIELDS:
        monkeypatch.delenv(env_name(field), raising=False)
    monkeypatch.chdir(tmp_path)


def doc_rows() -> dict[str, dict[str, str]]:
    """The table's rows by variable name, each cell stripped."""
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("|")]
    assert lines, "docs/configuration.md has no table"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == HEADER
    assert re.fullmatch(r"\|( --- \|)+", lines[1])
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(HEADER), f"a row with {len(cells)} cells: {line}"
        row = dict(zip(HEADER, cells, strict=True))
        match = re.fullmatch(r"`(FRAMEWATCH_[A-Z0-9_]+)`", row["Variable"])
        assert match, f"the Variable cell is not one `FRAMEWATCH_...` name: {row['Variable']}"
        assert match.group(1) not in rows, f"{match.group(1)} is documented twice"
        rows[match.group(1)] = row
    return rows


def expected_type(info: FieldInfo) -> str:
    """The base type, then the field's bounds as the doc writes them.

    `integer, 1–65535` (both inclusive), `integer, ≥ 1024`, `number, > 0 and ≤ 60`.
    """
    if get_origin(info.annotation) is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(info.annotation))
    types = [t for t in get_args(info.annotation) if t is not type(None)] or [info.annotation]
    assert len(types) == 1, f"no doc type for {info.annotation}"
    base = TYPE_NAMES[types[0]]
    bounds: dict[str, Any] = {}
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            bounds["Ge"] = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            bounds["Gt"] = meta.gt
        elif isinstance(meta, annotated_types.Le):
            bounds["Le"] = meta.le
        else:
            raise AssertionError(f"no doc wording for the constraint {meta!r}: add one here")
    if "Ge" in bounds and "Le" in bounds:
        return f"{base}, {bounds['Ge']}–{bounds['Le']}"
    signs = [f"{sign} {bounds[kind]}" for kind, sign in (("Ge", "≥"), ("Gt", ">"), ("Le", "≤"))
             if kind in bounds]
    return f"{base}, {' and '.join(signs)}" if signs else base


def test_every_field_is_documented_once_and_nothing_else() -> None:
    rows = doc_rows()

    assert sorted(rows) == sorted(env_name(field) for field in FIELDS)


def test_the_doc_names_no_variable_that_does_not_exist() -> None:
    named = set(re.findall(r"FRAMEWATCH_[A-Z0-9_]*[A-Z0-9]", DOC.read_text()))

    assert named, "the doc names no variable at all"
    assert named - {env_name(field) for field in FIELDS} == set()


@pytest.mark.parametrize("field", list(FIELDS))
def test_type_and_description_match_the_code(field: str) -> None:
    row = doc_rows()[env_name(field)]
    info = FIELDS[field]

    assert row["Type"] == expected_type(info)
    assert info.description, f"Settings.{field} has no description"
    assert row["Description"] == " ".join(info.description.split())


@pytest.mark.parametrize("field", list(FIELDS))
def test_documented_default_is_the_default(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = doc_rows()[env_name(field)]["Default"]
    default = FIELDS[field].default

    if default is None:
        assert cell == "unset"
        assert getattr(Settings(), field) is None
        return
    match = re.match(r"`([^`]+)`", cell)
    assert match, f"the default of {env_name(field)} is not a `value`: {cell}"
    # The documented value, given as the variable, is what the code uses when it is unset.
    monkeypatch.setenv(env_name(field), match.group(1))
    assert getattr(Settings(), field) == default
    monkeypatch.delenv(env_name(field))
    assert getattr(Settings(), field) == default


def test_settings_come_from_framewatch_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    values = {
        "FRAMEWATCH_DATA_DIR": str(tmp_path / "state"),
        "FRAMEWATCH_HOST": "0.0.0.0",
        "FRAMEWATCH_PORT": "9123",
        "FRAMEWATCH_REDIS_URL": "redis://127.0.0.1:6379/13",
        "FRAMEWATCH_SECRET_KEY": "a passphrase",
        "FRAMEWATCH_ADMIN_API_KEY": "fw_admin_from_env",
        "FRAMEWATCH_MAX_FRAME_BYTES": "2048",
        "FRAMEWATCH_LIVE_TTL_SECONDS": "0.25",
        "FRAMEWATCH_PROVIDER_MAX_RETRIES": "0",
        "FRAMEWATCH_BUILTIN_FACE_ENCODINGS": "false",
        "FRAMEWATCH_LOG_LEVEL": "debug",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert settings.data_dir == tmp_path / "state"
    assert settings.host == "0.0.0.0"
    assert settings.port == 9123
    assert settings.redis_url == "redis://127.0.0.1:6379/13"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "a passphrase"
    assert settings.admin_api_key is not None
    assert settings.admin_api_key.get_secret_value() == "fw_admin_from_env"
    assert "fw_admin_from_env" not in repr(settings)
    assert settings.max_frame_bytes == 2048
    assert settings.max_request_bytes == 2048 * 4 // 3 + 1024 * 1024
    assert settings.live_ttl_seconds == 0.25
    assert settings.provider_max_retries == 0
    assert settings.builtin_face_encodings is False
    assert settings.log_level == "DEBUG"
    # The default SQLite database lives in the data dir, as an absolute path.
    assert settings.database_url is None
    assert settings.resolved_database_url == (
        f"sqlite+aiosqlite:///{(tmp_path / 'state' / 'framewatch.db').resolve()}"
    )
    assert settings.frames_dir == tmp_path / "state" / "frames"


def test_database_url_replaces_the_sqlite_default(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://framewatch@db.example/framewatch"
    monkeypatch.setenv("FRAMEWATCH_DATABASE_URL", url)

    assert Settings().resolved_database_url == url


def test_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("framewatch_port", "8123")

    assert Settings().port == 8123


def test_a_dot_env_file_is_not_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FRAMEWATCH_PORT=9999\nFRAMEWATCH_HOST=0.0.0.0\n")

    settings = Settings()

    assert (settings.port, settings.host) == (8000, "127.0.0.1")


def test_defaults_without_any_variable() -> None:
    settings = Settings()

    assert settings.data_dir == Path("data")
    assert settings.resolved_database_url.endswith("/data/framewatch.db")
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:////")
    assert settings.secret_key is None and settings.admin_api_key is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRAMEWATCH_PORT", "0"),
        ("FRAMEWATCH_PORT", "65536"),
        ("FRAMEWATCH_PORT", "eighty"),
        ("FRAMEWATCH_MAX_FRAME_BYTES", "1023"),
        ("FRAMEWATCH_MAX_FRAME_PIXELS", "63"),
        ("FRAMEWATCH_MAX_FRAME_SIDE", "15"),
        ("FRAMEWATCH_MIN_FRAME_SIDE", "0"),
        ("FRAMEWATCH_LIVE_TTL_SECONDS", "0"),
        ("FRAMEWATCH_LIVE_WINDOW_SECONDS", "-1"),
        ("FRAMEWATCH_PROVIDER_TIMEOUT_SECONDS", "0"),
        ("FRAMEWATCH_PROVIDER_MAX_RETRIES", "11"),
        ("FRAMEWATCH_PROVIDER_MAX_RETRIES", "-1"),
        ("FRAMEWATCH_BUILTIN_FACE_ENCODINGS", "sometimes"),
    ],
)
def test_invalid_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError) as refused:
        Settings()

    (error,) = refused.value.errors()
    assert error["loc"] == (name.removeprefix(PREFIX).lower(),)


@pytest.mark.parametrize(("name", "value"), [("FRAMEWATCH_PORT", "1"), ("FRAMEWATCH_PORT", "65535"),
                                             ("FRAMEWATCH_MAX_FRAME_BYTES", "1024"),
                                             ("FRAMEWATCH_PROVIDER_MAX_RETRIES", "10")])
def test_bounds_are_inclusive_where_the_doc_says(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    assert getattr(Settings(), name.removeprefix(PREFIX).lower()) == int(value)
