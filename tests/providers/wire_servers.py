"""Fake DeepStack, CodeProject.AI, CompreFace and generic JSON services, real wire formats.

Each factory returns a `Fake`: an ASGI app that records every request it receives
(`fake.received`, `fake.calls`, `fake.paths`) and answers from its `Script` first — a queue of
behaviours such as `status(500)`, `sleep(1)`, `malformed({...})`, `not_json()` — and, once the
script is used up, like the real service: validating the request the same way and answering from
the predictions it was given (it does not look at the image, it only checks that it decodes).
`served(fake)` runs it on 127.0.0.1 and yields its URL with `ProviderDeps` around a real client.
"""

from __future__ import annotations

import asyncio
import atexit
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import httpx
import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from framewatch.providers.base import FrameImage, ProviderDeps
from tests.support.servers import serve_app

Handler = Callable[["Received"], Response]
Predictions = list[dict[str, Any]]


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    body: Any = None  # JSON to send; None = answer like the real service
    text: str | None = None  # raw (non-JSON) body
    seconds: float = 0.0  # sleep first, then answer like the real service


def ok(body: Any = None) -> Behaviour:
    return Behaviour(200, body)


def status(code: int, body: Any = None) -> Behaviour:
    return Behaviour(code, body if body is not None else {"error": f"scripted {code}"})


# HTTP 200 with this JSON, which may hold NaN (bodies are encoded with allow_nan).
malformed = ok


def not_json(text: str = "<html><body>502 Bad Gateway</body></html>", code: int = 200) -> Behaviour:
    return Behaviour(code, text=text)


def sleep(seconds: float) -> Behaviour:
    return Behaviour(seconds=seconds)


class Script:
    """Behaviours for the next calls, in order; then `then` (None: behave like the service)."""

    def __init__(self, *steps: Behaviour, then: Behaviour | None = None) -> None:
        self._steps = deque(steps)
        self._then = then

    def next(self) -> Behaviour | None:
        return self._steps.popleft() if self._steps else self._then


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str | None
    size: int
    data: bytes


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    json: Any = None


def json_response(body: Any, code: int = 200) -> Response:
    return Response(json.dumps(body, allow_nan=True), code, media_type="application/json")


class Fake:
    """An ASGI app recording what it receives and following its script."""

    def __init__(self, routes: dict[str, Handler], script: Script | None) -> None:
        self.script = script or Script()
        self.received: list[Received] = []
        # Unknown paths are recorded too, and answered 404 as the real services do.
        routes = {**routes, "/{unknown:path}": lambda _: Response("Not Found", 404)}
        endpoints = [Route(path, self._endpoint(handle), methods=["POST", "PUT"])
                     for path, handle in routes.items()]  # fmt: skip
        self._app = Starlette(routes=endpoints)

    @property
    def calls(self) -> int:
        return len(self.received)

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.received]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def _endpoint(self, handle: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            received = await _record(request)
            self.received.append(received)
            step = self.script.next() or Behaviour()
            await asyncio.sleep(step.seconds)
            if step.text is not None:
                return Response(step.text, step.status, media_type="text/html")
            if step.body is not None:
                return json_response(step.body, step.status)
            return handle(received)

        return endpoint


async def _record(request: Request) -> Received:
    headers = {key.lower(): value for key, value in request.headers.items()}
    received = Received(request.method, request.url.path, dict(request.query_params), headers)
    content_type = headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        for key, value in (await request.form()).multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                received.files[key] = UploadedFile(
                    value.filename, value.content_type, len(data), data
                )
            else:
                received.form[key] = value
    elif content_type.startswith("application/json"):
        received.json = json.loads(await request.body())
    return received


def decodes(data: bytes) -> bool:
    """Whether the bytes are an image OpenCV can read, as the real services require."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def jpeg_frame(width: int = 320, height: int = 240) -> FrameImage:
    """A real JPEG (a gradient) of the given size."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)
    ok_, encoded = cv2.imencode(".jpg", image)
    assert ok_
    return FrameImage(encoded.tobytes(), "image/jpeg", width, height)


def _no_builtin() -> Any:
    raise AssertionError("remote adapters must not use the built-in detector")


class _Switch:
    """The one served app; each test plugs its fake in (starting uvicorn costs ~0.2 s a test)."""

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif self.target is not None:
            await self.target(scope, receive, send)
        else:  # a request left over from an earlier test (e.g. a retry after a timeout)
            await Response("no fake plugged in", 503)(scope, receive, send)


@lru_cache(maxsize=1)
def _shared_server() -> tuple[str, _Switch]:
    switch = _Switch()
    server = serve_app(switch)
    url = server.__enter__()
    atexit.register(server.__exit__, None, None, None)
    return url, switch


@asynccontextmanager
async def served(fake: Any) -> AsyncIterator[tuple[str, ProviderDeps]]:
    """Serve `fake` on 127.0.0.1 (one uvicorn per test session, run with `serve_app`); yield
    its base URL and deps around a real httpx client."""
    url, switch = _shared_server()
    switch.target = fake
    try:
        async with httpx.AsyncClient() as client:
            yield url, ProviderDeps(http_client=client, builtin_detector=_no_builtin)
    finally:
        switch.target = None


# --- DeepStack and CodeProject.AI -------------------------------------------------------------

# fmt: off
PERSON_AND_CAR = (
    {"label": "person", "confidence": 0.91, "x_min": 10, "y_min": 20, "x_max": 110, "y_max": 220},
    {"label": "car", "confidence": 0.75, "x_min": 150, "y_min": 100, "x_max": 300, "y_max": 200},
    {"label": "dog", "confidence": 0.30, "x_min": 5, "y_min": 5, "x_max": 50, "y_max": 40},
)
# `confidence` is the detector's; `userid`/`similarity` are what recognition would find.
TWO_FACES = (
    {"confidence": 0.97, "x_min": 40, "y_min": 30, "x_max": 80, "y_max": 90,
     "userid": "alice", "similarity": 0.83},
    {"confidence": 0.88, "x_min": 200, "y_min": 40, "x_max": 240, "y_max": 95,
     "userid": "bob", "similarity": 0.35},
)
# What CodeProject.AI's server and module runner add around every module answer.
CODEPROJECT_ENVELOPE = {
    "inferenceMs": 12, "processMs": 15, "analysisRoundTripMs": 21, "code": 200,
    "executionProvider": "CPU", "canUseGPU": False, "requestId": "a1b2c3",
    "processedBy": "localhost", "timestampUTC": "Mon, 24 Nov 2025 17:50:00 GMT",
}
# fmt: on
BOX_KEYS = ("x_min", "y_min", "x_max", "y_max")
# DeepStack's recognize runs its face detector at a fixed 0.55; min_confidence applies to matches.
RECOGNIZE_DETECTOR_THRESHOLD = 0.55


def _ds_error(message: str, code: int) -> Response:
    return json_response({"success": False, "error": message, "duration": 0}, code)


def _ds_refusal(received: Received, api_key: str | None, enabled: str | None) -> Response | None:
    """DeepStack's middleware, in its order: endpoint enabled, api key, image, min_confidence."""
    if enabled is not None:
        return _ds_error(f"{enabled} not activated", 403)
    if api_key is not None and received.form.get("api_key") != api_key:
        return _ds_error("Incorrect api key", 401)
    if "image" not in received.files:
        return _ds_error("No valid image file found", 400)
    try:
        threshold = float(received.form.get("min_confidence") or 0.4)
    except ValueError:
        return _ds_error("Invalid value for min_confidence", 400)
    if threshold > 1:
        return _ds_error("min_confidence cannot be greater than 1", 400)
    if not decodes(received.files["image"].data):
        return json_response({"success": False, "error": "invalid image", "code": 400}, 400)
    return None


def _threshold(received: Received) -> float:
    return float(received.form.get("min_confidence") or 0.4)


def _objects(objects: Sequence[dict[str, Any]], threshold: float) -> Predictions:
    return [dict(item) for item in objects if item["confidence"] >= threshold]


def _faces(faces: Sequence[dict[str, Any]], threshold: float) -> Predictions:
    boxes = [{key: face[key] for key in ("confidence", *BOX_KEYS)} for face in faces]
    return [face for face in boxes if face["confidence"] >= threshold]


def _recognize(faces: Sequence[dict[str, Any]], threshold: float) -> Predictions:
    found = []
    for face in faces:
        if face["confidence"] >= RECOGNIZE_DETECTOR_THRESHOLD:
            known = face.get("userid") is not None and face.get("similarity", 0) >= threshold
            match = {"confidence": face.get("similarity"), "userid": face.get("userid")}
            unknown = {"confidence": 0, "userid": "unknown"}
            found.append({**(match if known else unknown), **{k: face[k] for k in BOX_KEYS}})
    return found


def deepstack_app(
    script: Script | None = None,
    *,
    objects: Sequence[dict[str, Any]] = PERSON_AND_CAR,
    faces: Sequence[dict[str, Any]] = TWO_FACES,
    api_key: str | None = None,
    detection_enabled: bool = True,
    face_enabled: bool = True,
) -> Fake:
    """DeepStack: `api_key` form field when it has a key, 401/403/400 errors as its middleware."""

    def route(find: Callable[[float], Predictions], enabled: bool, what: str) -> Handler:
        def handle(received: Received) -> Response:
            refused = _ds_refusal(received, api_key, None if enabled else what)
            if refused is not None:
                return refused
            predictions = find(_threshold(received))
            return json_response({"success": True, "predictions": predictions, "duration": 0})

        return handle

    detect = route(lambda t: _objects(objects, t), detection_enabled, "Detection endpoint")
    face = route(lambda t: _faces(faces, t), face_enabled, "Face endpoints")
    recognize = route(lambda t: _recognize(faces, t), face_enabled, "Face endpoints")
    routes = {"/v1/vision/detection": detect, "/v1/vision/custom/{model}": detect}
    return Fake({**routes, "/v1/vision/face": face, "/v1/vision/face/recognize": recognize}, script)


def codeproject_app(
    script: Script | None = None,
    *,
    objects: Sequence[dict[str, Any]] = PERSON_AND_CAR,
    faces: Sequence[dict[str, Any]] = TWO_FACES,
    percent: bool = True,
) -> Fake:
    """CodeProject.AI Server: always HTTP 200 with its envelope (module failures included),
    confidences in percent when `percent`, recognised faces named by `label` (as in its API
    docs), "No face found in image" as a failure of recognize, 404 for unknown routes, no key."""

    def route(module: str, command: str, find: Callable[[float], Predictions]) -> Handler:
        def handle(received: Received) -> Response:
            image = received.files.get("image")
            answer: dict[str, Any] = {"success": False, "error": "No image supplied"}
            if image is not None and decodes(image.data):
                predictions = find(_threshold(received))
                if percent:
                    predictions = [{**p, "confidence": p["confidence"] * 100} for p in predictions]
                answer = {"success": True, "predictions": predictions, "count": len(predictions)}
                if command == "recognize" and not predictions:
                    answer = {"success": False, "error": "No face found in image"}
            context = {"moduleId": module, "moduleName": module, "command": command}
            return json_response({**answer, **CODEPROJECT_ENVELOPE, **context})

        return handle

    def recognize_by_label(threshold: float) -> Predictions:
        found = _recognize(faces, threshold)
        return [
            {**{k: v for k, v in f.items() if k != "userid"}, "label": f["userid"]} for f in found
        ]

    detect = route("ObjectDetectionYOLOv5-6.2", "detect", lambda t: _objects(objects, t))
    face = route("FaceProcessing", "detect", lambda t: _faces(faces, t))
    recognize = route("FaceProcessing", "recognize", recognize_by_label)
    routes = {"/v1/vision/detection": detect, "/v1/vision/face": face}
    return Fake({**routes, "/v1/vision/face/recognize": recognize}, script)


# --- CompreFace -------------------------------------------------------------------------------

COMPREFACE_KEY = "00000000-0000-0000-0000-000000000002"
# fmt: off
COMPREFACE_FACES = (
    {"box": {"probability": 0.99, "x_min": 30, "y_min": 40, "x_max": 90, "y_max": 120},
     "subjects": [{"subject": "alice", "similarity": 0.97},
                  {"subject": "carol", "similarity": 0.41}],
     "embedding": [0.1, -0.2, 0.3, 0.05]},
    {"box": {"probability": 0.62, "x_min": 200, "y_min": 50, "x_max": 250, "y_max": 110},
     "subjects": [{"subject": "bob", "similarity": 0.22}],
     "embedding": [0.0, 0.4, -0.1, 0.2]},
)
# fmt: on
VERSIONS = {"detector": "facenet.FaceDetector", "calculator": "facenet.Calculator"}


def _cf_error(message: str, code: int, http_status: int = 400) -> Response:
    return json_response({"message": message, "code": code}, http_status)


def _cf_refusal(received: Received, api_key: str, service: str) -> Response | None:
    """CompreFace's key filter (codes 20, 26, 10) and its request checks."""
    key = received.headers.get("x-api-key")
    if key is None:
        return _cf_error("Missing header: x-api-key", 20)
    if len(key) < 36:
        return _cf_error("Service API key should be UUID", 26)
    if key != api_key:
        return _cf_error(f"{service} service with API Key {key} not found", 10, 404)
    if "file" not in received.files:
        return _cf_error("Required request part 'file' is not present", 34)
    if not decodes(received.files["file"].data):
        return _cf_error("Something went wrong, please try again", 0)
    return None


def _cf_area(face: dict[str, Any]) -> float:
    box = face["box"]
    return float((box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"]))


def compreface_app(
    script: Script | None = None,
    *,
    faces: Sequence[dict[str, Any]] = COMPREFACE_FACES,
    api_key: str = COMPREFACE_KEY,
) -> Fake:
    """CompreFace: its key filter (400 code 20 without `x-api-key`, 400 code 26 for a non-UUID,
    404 code 10 for an unknown key), 400 code 28 without faces, `limit` (the biggest faces first),
    and `prepareResponse` (embeddings only with the calculator plugin, `plugins_versions` only
    with `status=true`)."""

    def route(service: str) -> Handler:
        def handle(received: Received) -> Response:
            refused = _cf_refusal(received, api_key, service)
            if refused is not None:
                return refused
            query = received.query
            threshold = float(query.get("det_prob_threshold") or 0)
            found = [dict(face) for face in faces if face["box"]["probability"] >= threshold]
            limit = int(query.get("limit") or 0)
            if limit:  # "It recognizes the biggest faces first"
                found = sorted(found, key=_cf_area, reverse=True)[:limit]
            if not found:
                return _cf_error("No face is found in the given image", 28)
            for face in found:
                if "calculator" not in query.get("face_plugins", ""):
                    face.pop("embedding", None)
                face["subjects"] = face.get("subjects", [])[
                    : int(query.get("prediction_count") or 1)
                ]
                if service == "Detection":
                    face.pop("subjects")
            versions = {"plugins_versions": VERSIONS} if query.get("status") == "true" else {}
            return json_response({"result": found, **versions})

        return handle

    recognize, detect = route("Recognition"), route("Detection")
    routes = {"/api/v1/recognition/recognize": recognize, "/api/v1/detection/detect": detect}
    return Fake(routes, script)


# --- a generic JSON service -------------------------------------------------------------------

# Normalised [x, y, width, height] boxes and percent scores, nested under data.objects.
GENERIC_OBJECTS = [
    {"name": "person", "score": 88, "bbox": [0.1, 0.2, 0.25, 0.5]},
    {"name": "truck", "score": 64, "bbox": [0.5, 0.5, 0.3, 0.25]},
]
GENERIC_BODY = {"data": {"objects": GENERIC_OBJECTS}}


def generic_app(
    script: Script | None = None,
    *,
    body: Any = GENERIC_BODY,
    path: str = "/detect",
    token: str | None = None,
) -> Fake:
    """A JSON detector: 401 without `Authorization: Bearer <token>` when it has a token, 422
    without an image (a multipart file or a JSON body), else `body`."""

    def handle(received: Received) -> Response:
        if token is not None and received.headers.get("authorization") != f"Bearer {token}":
            return json_response({"detail": "Not authenticated"}, 401)
        if not received.files and not received.json:
            return json_response({"detail": "image is required"}, 422)
        return json_response(body)

    return Fake({path: handle}, script)
