"""docs/security.md's table of endpoints is the app's, exactly: every route needs the permission
the document says (only the health checks are open), and every permission is needed by some
route. The roles, and the permissions a camera-scoped key may not use, are as documented."""

from __future__ import annotations

import re
from pathlib import Path

from framewatch.app import create_app
from framewatch.auth.catalogue import OPEN, endpoint_permissions
from framewatch.auth.permissions import ROLE_PERMISSIONS, UNSCOPED_ONLY, Permission
from framewatch.core.config import Settings
from tests.security.support import DOCUMENTED_ROLES

SECURITY_MD = Path(__file__).parents[2] / "docs" / "security.md"
ROW = re.compile(r"^\| `(?P<method>[A-Z]+) (?P<path>/[^`]*)` \| `(?P<permission>[^`]+)` \|$")
OPEN_PATHS = {"/healthz", "/readyz"}


def documented_endpoints() -> list[tuple[str, str, str]]:
    """The rows of the endpoint table, in the document's order."""
    lines = SECURITY_MD.read_text().splitlines()
    start = lines.index("| endpoint | permission |")
    assert lines[start + 1] == "|---|---|"
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match is not None, f"not an endpoint row: {line!r}"
        rows.append((match["method"], match["path"], match["permission"]))
    return rows


def served_endpoints() -> list[tuple[str, str, str]]:
    return endpoint_permissions(create_app(Settings(data_dir=Path("/nonexistent"))))


def test_the_documented_table_is_the_apps_exactly() -> None:
    documented = documented_endpoints()
    served = served_endpoints()
    assert len(documented) == len(set(documented)), "a row is listed twice"
    assert sorted(set(documented) - set(served)) == [], "documented, not served"
    assert sorted(set(served) - set(documented)) == [], "served, not documented"
    assert documented == served, "same rows, other order (the table is sorted by path)"
    assert len(served) >= 63


def test_only_the_health_checks_are_open() -> None:
    open_routes = {path for _, path, permission in served_endpoints() if permission == OPEN}
    assert open_routes == OPEN_PATHS
    known = {p.value for p in Permission}
    for method, path, permission in served_endpoints():
        if path in OPEN_PATHS:
            continue
        if method == "WEBSOCKET":
            assert permission.startswith("detections:read"), permission
        else:
            assert permission in known, (method, path, permission)


def test_every_permission_is_needed_somewhere() -> None:
    needed = {permission.split(" ")[0] for _, _, permission in served_endpoints()}
    assert sorted(p.value for p in Permission if p.value not in needed) == []


def test_roles_are_the_documented_ones() -> None:
    assert {role.value: {p.value for p in perms} for role, perms in ROLE_PERMISSIONS.items()} \
        == {role: set(perms) for role, perms in DOCUMENTED_ROLES.items()}
    assert set(DOCUMENTED_ROLES["admin"]) == {p.value for p in Permission}


def test_the_permissions_a_scoped_key_may_not_use_are_the_documented_ones() -> None:
    text = SECURITY_MD.read_text()
    start = text.index("**Powers over every camera need an unscoped key.**")
    sentence = text[start:text.index(" act on ", start)]
    assert set(re.findall(r"`([a-z]+:[a-z]+)`", sentence)) == {p.value for p in UNSCOPED_ONLY}
