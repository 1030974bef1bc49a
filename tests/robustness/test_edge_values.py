"""Extreme values for every path and query parameter of the schema, on SQLite and on PostgreSQL.

schemathesis (test_schemathesis.py) draws random values, on SQLite; it rarely draws the few that
break a database: integers past 32 or 64 bits (PostgreSQL refuses to bind them, SQLite past 64),
NUL characters (PostgreSQL refuses them in text), times whose UTC date is outside years 1-9999.
This test sends exactly those, to every parameter of every operation the schema lists, with the
admin key, and holds every answer to the same checks as the schemathesis run (no 5xx; status,
content type, headers and body as documented).

Operations with a JSON body that has required fields get their parameters swept only when the
body can be left out or be `{}`; their bodies' own fields are covered by BODY_CASES below.
Multipart operations (`send-frame`, person photos) are covered by test_hostile_frames.py and
the schemathesis run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.core.failures import FailureGroup

from tests.robustness.reports import report
from tests.robustness.served import CHECKS, Served, serve_framewatch

INTEGERS = [0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]
STRINGS = ["\x00", "gate\x00", "%00", "../../etc/passwd", "x" * 300, "\u202egate", " "]
TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2024-02-30T00:00:00Z"]
# Path parameters that are not the one being swept.
ORDINARY = {"integer": 1, "string": "gate"}

# Body fields that reach the database, with values at its limits. (method, path, body)
BODY_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/detections/test-provider", {"provider_id": 2**31}),
    ("POST", "/api/v1/detections/test-provider", {"provider_id": 2**64}),
    ("POST", "/api/v1/providers", {"name": "edge", "kind": "deepstack",
                                   "base_url": "http://127.0.0.1:9/\x00"}),
    ("PATCH", "/api/v1/providers/1", {"base_url": "http://127.0.0.1:9/\x00"}),
    ("POST", "/api/v1/providers", {"name": "edge2", "kind": "builtin",
                                   "options": {"note\x00": "a\x00b", "n": 2**70}}),
    ("POST", "/api/v1/cameras", {"id": "edge", "name": "Edge", "provider_id": 2**31}),
    ("POST", "/api/v1/cameras", {"id": "edge", "name": "Edge\x00"}),
    ("PATCH", "/api/v1/cameras/gate", {"location": "\x00", "retention_frames_days": 2**40}),
    ("POST", "/api/v1/frames/1/redetect", {"provider_id": 2**63}),
    ("POST", "/api/v1/keys/2/rotate", {"grace_seconds": 2**63}),
    ("POST", "/api/v1/persons", {"name": "\x00"}),
    ("POST", "/api/v1/persons/1/faces/from-detection", {"detection_id": 2**63}),
    ("POST", "/api/v1/detections/send-frame", {"camera_id": "gate", "image_base64": "AA==",
                                               "captured_at": TIMES[0]}),
    ("POST", "/api/v1/detections/send-frame", {"camera_id": "gate\x00", "image_base64": "AA=="}),
    # An expiry whose UTC date falls outside years 1-9999.
    ("POST", "/api/v1/keys", {"name": "edge", "role": "viewer", "expires_at": TIMES[0]}),
    ("PATCH", "/api/v1/keys/2", {"expires_at": TIMES[1]}),
]


def values_for(schema: dict[str, Any]) -> tuple[str, list[Any]]:
    """The kind of a parameter's schema (`anyOf` with null unwrapped) and its extreme values."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    kinds = {s.get("type") for s in options}
    if "integer" in kinds:
        return "integer", INTEGERS
    if any(s.get("format") == "date-time" for s in options):
        return "date-time", TIMES
    if "string" in kinds:
        return "string", STRINGS
    return "other", []


def body_for(schema: schemathesis.schemas.BaseSchema, operation: Any) -> tuple[bool, Any]:
    """Whether the operation can be called without a real body, and the body to send."""
    body = operation.definition.raw.get("requestBody")
    if body is None:
        return True, None
    content = body.get("content", {})
    if "application/json" not in content:
        return False, None
    resolved = content["application/json"]["schema"]
    if "anyOf" in resolved and {"type": "null"} in resolved["anyOf"]:
        return True, None  # optional body
    if "$ref" in resolved:
        name = resolved["$ref"].rsplit("/", 1)[1]
        resolved = schema.raw_schema["components"]["schemas"][name]
    return not resolved.get("required"), {}


@pytest.fixture
def served(tmp_path: Path, any_database_url: str) -> Iterator[Served]:
    with serve_framewatch(tmp_path, any_database_url) as running:
        yield running


class Sweep:
    def __init__(self, served: Served, session: requests.Session) -> None:
        self.served = served
        self.session = session
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []

    def check(self, case: Any, what: str) -> None:
        headers = self.served.headers("admin")
        try:
            response = case.call_and_validate(base_url=self.served.base_url, headers=headers,
                                              session=self.session, checks=CHECKS, timeout=30)
        except FailureGroup as group:
            titles = "; ".join(f"{f.title}: {f.message.strip()[:200]}" for f in group.exceptions)
            self.failures.append(f"{what}: {titles}")
            return
        self.statuses[response.status_code] += 1


def test_extreme_parameters_and_fields(served: Served, any_database_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    sweep = Sweep(served, requests.Session())
    skipped = []
    for loaded in schema.get_all_operations():
        operation = loaded.ok()
        parameters = [p for p in operation.definition.raw.get("parameters", [])
                      if p["in"] in ("path", "query")]
        if not parameters:
            continue
        callable_, body = body_for(schema, operation)
        if not callable_:
            skipped.append(operation.label)
            continue
        path_values = {p["name"]: ORDINARY.get(values_for(p["schema"])[0], 1)
                       for p in parameters if p["in"] == "path"}
        for parameter in parameters:
            _, values = values_for(parameter["schema"])
            for value in values:
                where = {parameter["name"]: value}
                case = operation.Case(
                    path_parameters={**path_values, **where} if parameter["in"] == "path"
                    else path_values,
                    query=where if parameter["in"] == "query" else None,
                    **({"body": body} if body is not None else {}),
                )
                sweep.check(case, f"{operation.label} {parameter['name']}={value!r:.40}")
    for method, path, body in BODY_CASES:
        operation, path_parameters = find_operation(schema, method, path)
        sweep.check(operation.Case(path_parameters=path_parameters, body=body,
                                   media_type="application/json"),
                    f"{method} {path} {body!r:.80}")
    database = any_database_url.split(":", 1)[0]
    cases = sum(sweep.statuses.values()) + len(sweep.failures)
    statuses = ", ".join(f"{s}×{n}" for s, n in sorted(sweep.statuses.items()))
    report(f"extreme values ({database})",
           f"{cases} cases; statuses {statuses}\n"
           f"  parameters not swept (a multipart or required body): {', '.join(skipped)}\n"
           + ("\n".join(f"  FAILED {f}" for f in sweep.failures) or "  no failures"))
    assert not sweep.failures, "\n".join(sweep.failures)
    assert cases > 300


def find_operation(schema: Any, method: str, path: str) -> tuple[Any, dict[str, str]]:
    """The operation that `method path` calls, and its path parameters."""
    segments = path.split("/")
    for loaded in schema.get_all_operations():
        operation = loaded.ok()
        template = operation.path.split("/")
        if operation.method.upper() != method or len(template) != len(segments):
            continue
        if all(t == s or t.startswith("{") for t, s in zip(template, segments, strict=True)):
            return operation, {t[1:-1]: s for t, s in zip(template, segments, strict=True)
                               if t.startswith("{")}
    raise AssertionError(f"no operation for {method} {path}")
