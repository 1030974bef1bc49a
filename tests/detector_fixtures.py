"""The built-in detector and the real test photographs, shared by detector and provider tests.

Import the fixture explicitly in a test module (it is not in a conftest, so that it cannot collide
with other suites' fixtures):

    from tests.detector_fixtures import builtin_detector_fixture  # noqa: F401

The detector is loaded once per process (`shared_detector`), however many modules import it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from framewatch.detector.detector import BuiltinDetector
from framewatch.providers.base import BoundingBox, FoundObject

DATA = Path(__file__).parent / "data"

# Where things are in the test photographs (pixels), measured once by eye and by the detector.
ASTRONAUT_FACE_CENTRE = (225.0, 118.0)  # Eileen Collins' face, 512x512 frame
GRACE_HOPPER_FACE_CENTRE = (266.0, 231.0)  # 512x600 frame
STREET_PERSON_NEAR_CAMERA = BoundingBox(242, 390, 273, 450)  # walking, bottom centre, 640x480
STREET_PARKED_VEHICLES = BoundingBox(540, 40, 640, 80)  # white van and a car, top right


@functools.cache
def shared_detector() -> BuiltinDetector:
    return BuiltinDetector(face_encodings=True)


@pytest.fixture(scope="session", name="builtin_detector")
def builtin_detector_fixture() -> BuiltinDetector:
    """One detector with face encodings on, loaded once for the whole session."""
    return shared_detector()


def frame_path(name: str) -> Path:
    return DATA / name


def frame_bytes(name: str) -> bytes:
    return frame_path(name).read_bytes()


def frame(name: str) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(frame_path(name)), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {name}"
    return np.asarray(image, dtype=np.uint8)


def centre(box: BoundingBox) -> tuple[float, float]:
    return (box.x_min + box.x_max) / 2, (box.y_min + box.y_max) / 2


def contains(outer: BoundingBox, inner: BoundingBox, slack: float = 2.0) -> bool:
    return (
        outer.x_min - slack <= inner.x_min
        and outer.y_min - slack <= inner.y_min
        and outer.x_max + slack >= inner.x_max
        and outer.y_max + slack >= inner.y_max
    )


def iou(a: BoundingBox, b: BoundingBox) -> float:
    ix = max(0.0, min(a.x_max, b.x_max) - max(a.x_min, b.x_min))
    iy = max(0.0, min(a.y_max, b.y_max) - max(a.y_min, b.y_min))
    inter = ix * iy
    return inter / (a.width * a.height + b.width * b.height - inter)


def of_type(objects: list[FoundObject], kind: str) -> list[FoundObject]:
    return [obj for obj in objects if obj.type == kind]
