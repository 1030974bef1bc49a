"""The built-in detector behind DeepStack's HTTP API, for tools that speak DeepStack.

    POST /v1/vision/detection   multipart `image`, optional `min_confidence`  → objects (80 COCO)
    POST /v1/vision/face        multipart `image`, optional `min_confidence`  → faces
    GET  /  and  GET /v1/status                                               → what is served

Answers follow DeepStack's: `{"success": true, "predictions": [{"label", "confidence", "x_min",
"y_min", "x_max", "y_max"}], "duration": <ms>}` with integer pixel coordinates, and errors are
`{"success": false, "error": "...", "duration": 0}` with DeepStack's statuses and messages
(400 "No valid image file found", 400 "invalid image file", 401 "Incorrect api key"...).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from framewatch.detector.detector import BuiltinDetector, decode_image
from framewatch.providers.base import FACE, PERSON, VEHICLE, FoundObject

DETECTION_PATH = "/v1/vision/detection"
FACE_PATH = "/v1/vision/face"

# DeepStack's own messages, kept verbatim (spelling included) for clients that match on them.
NO_IMAGE = "No valid image file found"
BAD_CONFIDENCE = "Invalid value for min_confidence"
CONFIDENCE_ABOVE_ONE = "min_confidence cannot be greater than 1"
BAD_API_KEY = "Incorrect api key"
SERVER_ERROR = "error occured on the server"
INVALID_IMAGE = {DETECTION_PATH: "invalid image file", FACE_PATH: "invalid image"}


class _Refused(Exception):
    def __init__(self, status_code: int, error: str) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error


class _LazyDetector:
    """Creates the detector once, on first use, even when several threads ask at once."""

    def __init__(self, factory: Callable[[], BuiltinDetector]) -> None:
        self._factory = factory
        self._detector: BuiltinDetector | None = None
        self._lock = threading.Lock()

    def get(self) -> BuiltinDetector:
        with self._lock:
            if self._detector is None:
                self._detector = self._factory()
            return self._detector


def create_provider_server_app(
    detector_factory: Callable[[], BuiltinDetector],
    *,
    min_confidence: float = 0.4,
    api_key: str | None = None,
) -> FastAPI:
    """A DeepStack-compatible app around the detector `detector_factory` returns.

    The detector is created once, in a worker thread at start-up (a missing model package fails
    the start), and every detection runs in a worker thread. `min_confidence` is the default when
    a request sends none. With `api_key` set, requests must send it in the form field `api_key`,
    as with DeepStack's `API-KEY`.
    """
    detector = _LazyDetector(detector_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(detector.get)
        yield

    app = FastAPI(title="framewatch built-in detector (DeepStack API)", lifespan=lifespan)

    async def status() -> dict[str, Any]:
        return {
            "success": True,
            "service": "framewatch built-in detector",
            "model": detector.get().model_name,
            "endpoints": [DETECTION_PATH, FACE_PATH],
        }

    app.add_api_route("/", status, methods=["GET"])
    app.add_api_route("/v1/status", status, methods=["GET"])

    async def detection(request: Request) -> JSONResponse:
        return await _answer(request, DETECTION_PATH, detector, min_confidence, api_key)

    async def face(request: Request) -> JSONResponse:
        return await _answer(request, FACE_PATH, detector, min_confidence, api_key)

    app.add_api_route(DETECTION_PATH, detection, methods=["POST"])
    app.add_api_route(FACE_PATH, face, methods=["POST"])
    return app


async def _answer(
    request: Request,
    path: str,
    detector: _LazyDetector,
    default_confidence: float,
    api_key: str | None,
) -> JSONResponse:
    started = time.perf_counter()
    try:
        data, threshold = await _read_request(request, default_confidence, api_key)
        found = await asyncio.to_thread(_detect, detector, path, data, threshold)
    except _Refused as refusal:
        body = {"success": False, "error": refusal.error, "duration": 0}
        return JSONResponse(body, status_code=refusal.status_code)
    except Exception:
        body = {"success": False, "error": SERVER_ERROR, "duration": 0}
        return JSONResponse(body, status_code=500)
    duration = round((time.perf_counter() - started) * 1000)
    predictions = [_prediction(obj) for obj in found]
    return JSONResponse({"success": True, "predictions": predictions, "duration": duration})


async def _read_request(
    request: Request, default_confidence: float, api_key: str | None
) -> tuple[bytes, float]:
    try:
        form = await request.form()
    except Exception:  # malformed multipart or urlencoded bodies: DeepStack sees no image either
        raise _Refused(400, NO_IMAGE) from None
    if api_key is not None and form.get("api_key") != api_key:
        raise _Refused(401, BAD_API_KEY)
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise _Refused(400, NO_IMAGE)
    threshold = default_confidence
    text = form.get("min_confidence")
    if isinstance(text, str) and text.strip():
        try:
            threshold = float(text)
        except ValueError:
            raise _Refused(400, BAD_CONFIDENCE) from None
        if threshold != threshold:  # NaN
            raise _Refused(400, BAD_CONFIDENCE)
        if threshold > 1.0:
            raise _Refused(400, CONFIDENCE_ABOVE_ONE)
    return await image.read(), max(threshold, 0.0)


def _detect(detector: _LazyDetector, path: str, data: bytes, threshold: float) -> list[FoundObject]:
    image = decode_image(data)
    if image is None:
        raise _Refused(400, INVALID_IMAGE[path])
    model = detector.get()
    if path == FACE_PATH:
        types = frozenset({FACE})
    else:
        types = frozenset(model.object_labels) | {PERSON, VEHICLE}
    found = model.detect(image, types, threshold, encodings=False)
    return sorted(found, key=lambda obj: -obj.confidence)


def _prediction(obj: FoundObject) -> dict[str, Any]:
    return {
        "label": obj.label,
        "confidence": obj.confidence,
        "x_min": round(obj.box.x_min),
        "y_min": round(obj.box.y_min),
        "x_max": round(obj.box.x_max),
        "y_max": round(obj.box.y_max),
    }
