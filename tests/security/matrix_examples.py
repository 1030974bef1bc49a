"""An example request for every endpoint, with the status an allowed key gets: unscoped, and
scoped to camera `gate` (whose world is `tests.security.support.build_world`).

The rules for a scoped key: a camera outside its scope named in a path (or an object of such a
camera: detection, frame, queue item) is 404; named in a filter, in a new camera's id or in
send-frame, 403; the admin powers over what every camera shares (keys, providers, retention,
webhooks: `framewatch.auth.permissions.UNSCOPED_ONLY`) need an unscoped key (403, reason
`camera_scope`). A route missing from `EXAMPLES` fails `test_access_matrix`.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import frame_bytes
from tests.queue.scenario import flaky_provider_body
from tests.security.support import ADMIN, World, fresh_frame

PLACEHOLDER = 999_999  # the target of a request that is refused before it is looked at
names = itertools.count(1)


@dataclass
class Ctx:
    client: httpx.AsyncClient
    world: World
    provider_url: str
    person_id: int
    face_id: int
    receiver_url: str  # a webhook receiver that accepts every delivery
    webhook_id: int  # a webhook subscribed to it
    allowed: bool = True  # whether the key about to call may; fresh targets only then


@dataclass(frozen=True)
class Req:
    path: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


Build = Callable[[Ctx], Req | Awaitable[Req]]


@dataclass(frozen=True)
class Example:
    name: str
    build: Build
    unscoped: int  # status for an allowed key of every camera
    scoped: int  # status for an allowed key scoped to `gate`


def fixed(name: str, unscoped: int, scoped: int, **request: Any) -> Example:
    return Example(name, lambda _: Req(**request), unscoped, scoped)


async def created(ctx: Ctx, path: str, body: dict[str, Any], **fields: Any) -> int:
    """The id of something new made by the admin (a placeholder when the caller may not)."""
    if not ctx.allowed:
        return PLACEHOLDER
    response = await ctx.client.post(path, json=body or None, headers=ADMIN, **fields)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def on_cameras(ok: int, **request: Any) -> list[Example]:
    """The camera in scope, and the one outside it (404)."""
    return [fixed("gate", ok, ok, path={"camera_id": "gate"}, **request),
            fixed("yard", ok, 404, path={"camera_id": "yard"}, **request)]


def filtered(**request: Any) -> list[Example]:
    """A list without a camera filter, filtered on the camera in scope, and on the other (403)."""
    params = request.pop("params", {})
    return [fixed("no filter", 200, 200, params=params or None, **request),
            fixed("camera gate", 200, 200, params={**params, "camera_id": "gate"}, **request),
            fixed("camera yard", 200, 403, params={**params, "camera_id": "yard"}, **request)]


def owned(name: str, kind: str, ok: int, **request: Any) -> list[Example]:
    """An object (detection, frame, queue item) of each camera: the other one's is 404."""
    def build(camera: str) -> Build:
        return lambda c: Req(path={name: getattr(c.world, kind)[camera]}, **request)
    return [Example("gate's", build("gate"), ok, ok), Example("yard's", build("yard"), ok, 404)]


def unscoped_only(ok: int, build: Build) -> list[Example]:
    """Admin powers over every camera: a scoped key is refused (403)."""
    return [Example("any", build, ok, 403)]


def send_frame(camera: str) -> Build:
    return lambda _: Req(files={"image": ("f.jpg", fresh_frame(), "image/jpeg")},
                         data={"camera_id": camera})


def photo(_: Ctx) -> Req:
    return Req(files={"image": ("face.jpg", frame_bytes("grace_hopper.jpg"), "image/jpeg")})


async def fresh_camera(c: Ctx) -> Req:
    name = f"cam-{next(names)}"
    if c.allowed:
        response = await c.client.post("/api/v1/cameras", headers=ADMIN,
                                       json={"id": name, "name": name})
        assert response.status_code == 201, response.text
    return Req(path={"camera_id": name})


async def fresh_key(c: Ctx, **request: Any) -> Req:
    body = {"name": f"spare-{next(names)}", "role": "viewer"}
    return Req(path={"key_id": await created(c, "/api/v1/keys", body)}, **request)


async def fresh_provider(c: Ctx) -> Req:
    body = {"name": f"spare-{next(names)}", "kind": "builtin"}
    return Req(path={"provider_id": await created(c, "/api/v1/providers", body)})


async def fresh_person(c: Ctx) -> Req:
    body = {"name": f"someone {next(names)}"}
    return Req(path={"person_id": await created(c, "/api/v1/persons", body)})


async def fresh_face(c: Ctx) -> Req:
    face = await created(c, f"/api/v1/persons/{c.person_id}/faces", {},
                         files=photo(c).files)
    return Req(path={"person_id": c.person_id, "face_id": face})


async def fresh_subject(c: Ctx) -> Req:
    body = {"provider": "*", "subject": f"subject-{next(names)}"}
    subject = await created(c, f"/api/v1/persons/{c.person_id}/subjects", body)
    return Req(path={"person_id": c.person_id, "subject_id": subject})


def person(**request: Any) -> Build:
    return lambda c: Req(path={"person_id": c.person_id}, **request)


def seen_face(camera: str) -> Build:
    return lambda c: Req(path={"person_id": c.person_id},
                         json={"detection_id": c.world.detections[camera]})


def provider_settings(c: Ctx) -> Req:
    body = flaky_provider_body(c.provider_url)
    for name in ("name", "is_default"):
        body.pop(name)
    return Req(json=body)


def flaky_provider(**request: Any) -> Build:
    return lambda c: Req(path={"provider_id": c.world.provider_id}, **request)


def webhook(**request: Any) -> Build:
    return lambda c: Req(path={"webhook_id": c.webhook_id}, **request)


def new_webhook(c: Ctx) -> Req:
    # Disabled: the deliveries of the matrix's frames would only keep the receiver busy.
    return Req(json={"name": f"hook-{next(names)}", "url": c.receiver_url, "enabled": False})


async def fresh_webhook(c: Ctx) -> Req:
    return Req(path={"webhook_id": await created(c, "/api/v1/webhooks", new_webhook(c).json)})


async def delivered(c: Ctx) -> Req:
    """A ping the receiver took (only a delivered or dead delivery can be sent again)."""
    delivery = PLACEHOLDER
    if c.allowed:
        response = await c.client.post(f"/api/v1/webhooks/{c.webhook_id}/ping", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "delivered", response.text
        delivery = response.json()["id"]
    return Req(path={"webhook_id": c.webhook_id, "delivery_id": delivery})


def new_camera(c: Ctx) -> Req:
    name = f"cam-{next(names)}"
    return Req(json={"id": name, "name": name})


DETECTIONS = "/api/v1/detections"
PERSONS = "/api/v1/persons"
ROUTES = "/api/v1/cameras", "/api/v1/keys", "/api/v1/providers", "/api/v1/retention"
CAMERAS, KEYS, PROVIDERS, RETENTION = ROUTES
WEBHOOKS = "/api/v1/webhooks"

EXAMPLES: dict[tuple[str, str], list[Example]] = {
    ("GET", "/healthz"): [fixed("open", 200, 200)],
    ("GET", "/readyz"): [fixed("open", 200, 200)],
    ("POST", "/api/v1/auth/ws-token"): [fixed("token", 200, 200)],
    # Cameras
    ("GET", CAMERAS): [fixed("list", 200, 200)],
    ("POST", CAMERAS): [Example("new camera", new_camera, 201, 403),
                        fixed("gate again", 409, 409, json={"id": "gate", "name": "Gate"})],
    ("GET", CAMERAS + "/{camera_id}"): on_cameras(200),
    ("PATCH", CAMERAS + "/{camera_id}"): on_cameras(200, json={"location": "north"}),
    ("DELETE", CAMERAS + "/{camera_id}"): [Example("another camera", fresh_camera, 204, 404)],
    ("GET", CAMERAS + "/{camera_id}/state"): on_cameras(200),
    ("POST", CAMERAS + "/{camera_id}/purge-biometrics"): on_cameras(200),
    # Detections, events, live, statistics, frames
    ("GET", DETECTIONS): filtered(),
    ("GET", DETECTIONS + "/events"): filtered(),
    ("GET", DETECTIONS + "/live"): filtered(),
    ("GET", DETECTIONS + "/statistics"): filtered(),
    ("GET", DETECTIONS + "/{detection_id}"): owned("detection_id", "detections", 200),
    ("POST", DETECTIONS + "/send-frame"): [Example("gate", send_frame("gate"), 200, 200),
                                           Example("yard", send_frame("yard"), 200, 403)],
    ("GET", "/api/v1/frames/{frame_id}/image"): owned("frame_id", "frames", 200),
    ("POST", "/api/v1/frames/{frame_id}/redetect"): owned("frame_id", "frames", 200),
    # Queue
    ("GET", DETECTIONS + "/queue"): filtered(),
    ("GET", DETECTIONS + "/queue-stats"): [fixed("stats", 200, 200)],
    ("GET", "/metrics"): [fixed("prometheus", 200, 200)],
    ("GET", DETECTIONS + "/queue/{item_id}"): owned("item_id", "items", 200),
    # Only dead items can be retried (409); another camera's is not there at all (404).
    ("POST", DETECTIONS + "/queue/{item_id}/retry"): owned("item_id", "items", 409),
    ("POST", DETECTIONS + "/queue/retry-dead"): filtered(),
    # Providers
    ("GET", PROVIDERS): [fixed("list", 200, 200)],
    ("POST", PROVIDERS): unscoped_only(
        201, lambda _: Req(json={"name": f"new-{next(names)}", "kind": "builtin"})),
    ("GET", PROVIDERS + "/{provider_id}"): [Example("flaky", flaky_provider(), 200, 200)],
    ("PATCH", PROVIDERS + "/{provider_id}"): unscoped_only(
        200, flaky_provider(json={"min_confidence": 0.1})),
    ("DELETE", PROVIDERS + "/{provider_id}"): unscoped_only(204, fresh_provider),
    ("GET", DETECTIONS + "/provider/config"): [fixed("default", 200, 200)],
    ("PUT", DETECTIONS + "/provider/config"): unscoped_only(200, provider_settings),
    ("POST", DETECTIONS + "/test-provider"): unscoped_only(
        200, lambda c: Req(json={"provider_id": c.world.provider_id})),
    # Keys
    ("GET", KEYS): unscoped_only(200, lambda _: Req()),
    ("POST", KEYS): unscoped_only(
        201, lambda _: Req(json={"name": f"new-{next(names)}", "role": "viewer"})),
    ("PATCH", KEYS + "/{key_id}"): unscoped_only(
        200, lambda c: fresh_key(c, json={"camera_ids": None})),
    ("DELETE", KEYS + "/{key_id}"): unscoped_only(200, fresh_key),
    ("POST", KEYS + "/{key_id}/rotate"): unscoped_only(200, fresh_key),
    # Retention
    ("GET", RETENTION): unscoped_only(200, lambda _: Req()),
    ("POST", RETENTION + "/run"): unscoped_only(200, lambda _: Req(json={"dry_run": True})),
    # Webhooks
    ("GET", WEBHOOKS): unscoped_only(200, lambda _: Req()),
    ("POST", WEBHOOKS): unscoped_only(201, new_webhook),
    ("GET", WEBHOOKS + "/{webhook_id}"): unscoped_only(200, webhook()),
    ("PATCH", WEBHOOKS + "/{webhook_id}"): unscoped_only(
        200, webhook(json={"min_confidence": 0.2})),
    ("DELETE", WEBHOOKS + "/{webhook_id}"): unscoped_only(204, fresh_webhook),
    ("GET", WEBHOOKS + "/{webhook_id}/deliveries"): unscoped_only(200, webhook()),
    ("POST", WEBHOOKS + "/{webhook_id}/ping"): unscoped_only(200, webhook()),
    ("POST", WEBHOOKS + "/{webhook_id}/deliveries/{delivery_id}/redeliver"): unscoped_only(
        200, delivered),
    # Persons: the gallery is shared; sightings and search are filtered by scope.
    ("GET", PERSONS): [fixed("list", 200, 200)],
    ("POST", PERSONS): [Example("new person", lambda _: Req(json={"name": f"p{next(names)}"}),
                                201, 201)],
    ("GET", PERSONS + "/{person_id}"): [Example("person", person(), 200, 200)],
    ("PATCH", PERSONS + "/{person_id}"): [Example("person", person(json={"notes": "n"}),
                                                  200, 200)],
    ("DELETE", PERSONS + "/{person_id}"): [Example("another person", fresh_person, 204, 204)],
    ("GET", PERSONS + "/{person_id}/faces"): [Example("person", person(), 200, 200)],
    ("POST", PERSONS + "/{person_id}/faces"): [
        Example("photo", lambda c: Req(path={"person_id": c.person_id}, files=photo(c).files),
                201, 201)],
    # The world's detections are persons, not faces: 422, unless out of scope (404).
    ("POST", PERSONS + "/{person_id}/faces/from-detection"): [
        Example("gate's", seen_face("gate"), 422, 422),
        Example("yard's", seen_face("yard"), 422, 404)],
    ("GET", PERSONS + "/{person_id}/faces/{face_id}/crop"): [
        Example("face", lambda c: Req(path={"person_id": c.person_id, "face_id": c.face_id}),
                200, 200)],
    ("DELETE", PERSONS + "/{person_id}/faces/{face_id}"): [Example("face", fresh_face, 204, 204)],
    ("GET", PERSONS + "/{person_id}/subjects"): [Example("person", person(), 200, 200)],
    ("POST", PERSONS + "/{person_id}/subjects"): [Example("subject", person(
        json={"provider": "*", "subject": "alice"}), 201, 201)],
    ("DELETE", PERSONS + "/{person_id}/subjects/{subject_id}"): [
        Example("subject", fresh_subject, 204, 204)],
    ("GET", PERSONS + "/{person_id}/sightings"): [Example("person", person(), 200, 200)],
    ("POST", PERSONS + "/search"): [Example("photo", photo, 200, 200)],
}
# The WebSocket has its own test (`test_websocket_access`).
WEBSOCKET_ROUTE = ("WEBSOCKET", "/api/v1/detections/ws")
