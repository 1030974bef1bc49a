"""The built-in provider: the offline detector of `framewatch.detector`, in this process.

Frames are decoded with OpenCV and detected in a worker thread, so the event loop never blocks.
The detector itself comes from `ProviderDeps.builtin_detector` (one shared copy per process).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from framewatch.detector.detector import decode_image
from framewatch.detector.weights import DetectorUnavailable, sample_frame
from framewatch.providers.base import (
    FACE,
    PERSON,
    STANDARD_TYPES,
    Capabilities,
    ConnectionReport,
    FoundObject,
    FrameImage,
    ProviderDeps,
    ProviderError,
    ProviderResponseError,
    ProviderResult,
    ProviderSpec,
    ProviderUnreachable,
)


class BuiltinDetectorMissing(ProviderUnreachable):
    """The detector's model packages are not installed: unavailable, and retrying cannot help."""

    retryable = False


class BuiltinProvider:
    """People, faces (with 128-d encodings) and vehicles, found offline on this machine's CPU."""

    kind: ClassVar[str] = "builtin"

    def __init__(self, spec: ProviderSpec, deps: ProviderDeps) -> None:
        self.spec = spec
        self._deps = deps

    def capabilities(self) -> Capabilities:
        return Capabilities(
            detection_types=STANDARD_TYPES,
            face_encodings=True,
            identification=False,
            remote=False,
        )

    async def detect(self, frame: FrameImage, types: frozenset[str]) -> ProviderResult:
        """Find the wanted `types` in the frame; `raw` lists what was found (no encodings).

        Raises `ProviderResponseError` when the bytes do not decode as an image and
        `BuiltinDetectorMissing` (a non-retryable `ProviderUnreachable`) when the model packages
        are not installed.
        """
        wanted = types & self.spec.detection_types
        started = time.perf_counter()
        model, objects = await asyncio.to_thread(self._detect_blocking, frame.data, wanted)
        latency_ms = (time.perf_counter() - started) * 1000
        return ProviderResult(
            objects=objects, model=model, raw=summarise(objects), latency_ms=latency_ms
        )

    async def test_connection(self) -> ConnectionReport:
        """Detect on the bundled sample photo; ok when the astronaut's face and body are found."""
        started = time.perf_counter()
        try:
            model, objects = await asyncio.to_thread(
                self._detect_blocking, sample_frame(), frozenset({PERSON, FACE})
            )
        except Exception as exc:  # a connection test reports failures, it never raises
            detail = (
                exc.message if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            )
            return ConnectionReport(
                ok=False, latency_ms=(time.perf_counter() - started) * 1000, detail=detail
            )
        latency_ms = (time.perf_counter() - started) * 1000
        persons = sum(1 for obj in objects if obj.type == PERSON)
        faces = sum(1 for obj in objects if obj.type == FACE)
        ok = persons >= 1 and faces >= 1
        verdict = "ok" if ok else "expected at least one person and one face: models may be damaged"
        return ConnectionReport(
            ok=ok,
            latency_ms=latency_ms,
            detail=(
                f"{model}: {persons} person(s) and {faces} face(s) in the sample frame "
                f"in {latency_ms:.0f} ms; {verdict}"
            ),
        )

    def _detect_blocking(self, data: bytes, types: frozenset[str]) -> tuple[str, list[FoundObject]]:
        image = decode_image(data)
        if image is None:
            raise ProviderResponseError(
                f"{self.spec.name}: the frame ({len(data)} bytes) could not be decoded as an image"
            )
        try:
            detector = self._deps.builtin_detector()
        except DetectorUnavailable as exc:
            raise BuiltinDetectorMissing(f"{self.spec.name}: {exc}") from exc
        if not types:
            return detector.model_name, []
        objects = detector.detect(image, types, self.spec.min_confidence)
        return detector.model_name, objects


def summarise(objects: list[FoundObject]) -> list[dict[str, Any]]:
    """What was found, JSON-compatible and small: no encodings, landmarks or subjects."""
    summary = []
    for obj in objects:
        entry: dict[str, Any] = {
            "type": obj.type,
            "label": obj.label,
            "confidence": obj.confidence,
            "x_min": obj.box.x_min,
            "y_min": obj.box.y_min,
            "x_max": obj.box.x_max,
            "y_max": obj.box.y_max,
        }
        if "source" in obj.attributes:
            entry["source"] = obj.attributes["source"]
        summary.append(entry)
    return summary
