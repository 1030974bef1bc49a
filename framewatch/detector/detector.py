"""The built-in, offline detector: people, vehicles and other COCO objects, faces, face encodings.

Models (all read from installed packages, loaded once, run on CPU):

* YOLOv3-tiny (80 COCO classes) for people, vehicles and other objects;
* CenterFace for faces and five landmarks;
* dlib's ResNet for 128-d face encodings (`dlib_resnet_v1`).

YOLOv3-tiny is good on street scenes but misses people in close shots, which CenterFace finds
easily by their face. So when a confident, large face has no person box around it, a person box is
inferred from the face (attributes `{"source": "face"}`), with a lower confidence than the face.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import cv2
import numpy as np
import numpy.typing as npt

from framewatch.detector.encoder import ENCODING_MODEL, FaceEncoder
from framewatch.detector.faces import LANDMARK_NAMES, FaceDetector, FaceHit
from framewatch.detector.objects import ObjectDetector, ObjectHit, coco_label
from framewatch.detector.weights import ModelFiles, locate_model_files
from framewatch.providers.base import (
    FACE,
    PERSON,
    BoundingBox,
    FoundObject,
    detection_type_for,
)

OBJECT_MODEL = "yolov3-tiny"
FACE_MODEL = "centerface"

# A person box is inferred from a face only for a confident face that is large in the frame
# (a close shot, where YOLOv3-tiny is weak) and not inside any person box already found.
FACE_PERSON_MIN_CONFIDENCE = 0.75
FACE_PERSON_MIN_HEIGHT_FRACTION = 0.12
FACE_PERSON_MIN_HEIGHT_PX = 40
FACE_PERSON_CONFIDENCE_FACTOR = 0.8
# Body proportions in face heights: an adult is about 7.5 heads tall and 3 heads wide at the
# shoulders. Boxes are clamped to the frame, which usually cuts a close shot at the chest.
_BODY_HEIGHT_IN_FACES = 7.0
_BODY_WIDTH_IN_FACES = 3.0
_HEAD_TOP_MARGIN_IN_FACES = 0.15


class BuiltinDetector:
    """Loads all models once; `detect` and `encode_faces` may be called from several threads.

    Calls are blocking and CPU-bound (about 0.1 s for a 640x480 frame, plus about 0.05 s per face
    when encodings are on): run them in a worker thread from async code.
    """

    def __init__(
        self,
        *,
        face_encodings: bool = True,
        object_input_size: int = 416,
        face_max_side: int = 640,
        files: ModelFiles | None = None,
    ) -> None:
        """Load the models; raises `DetectorUnavailable` when a model package is missing."""
        self._files = files or locate_model_files()
        self.face_encodings = face_encodings
        self._objects = ObjectDetector(self._files, input_size=object_input_size)
        self._faces = FaceDetector(self._files.centerface_onnx, max_side=face_max_side)
        self._encoder: FaceEncoder | None = FaceEncoder(self._files) if face_encodings else None
        self._encoder_lock = threading.Lock()
        parts = [OBJECT_MODEL, FACE_MODEL] + ([ENCODING_MODEL] if face_encodings else [])
        self.model_name: str = "+".join(parts)

    @property
    def object_labels(self) -> tuple[str, ...]:
        """The 80 COCO labels the object model knows, in COCO spelling (`motorcycle`, `tv`)."""
        return self._objects.labels

    def detect(
        self,
        image_bgr: npt.NDArray[np.uint8],
        types: frozenset[str],
        min_confidence: float,
        *,
        encodings: bool = True,
    ) -> list[FoundObject]:
        """Find `types` in a BGR (OpenCV) image; boxes are in its pixels, clamped to it.

        `types` holds detection types (`person`, `face`, `vehicle`) and/or COCO labels (`dog`,
        `motorbike` or `motorcycle`...). Faces carry their landmarks in `attributes["landmarks"]`
        and an encoding when the detector has `face_encodings` on, unless `encodings=False`.
        Confidences are 0..1, best first per kind.
        """
        image = as_bgr(image_bgr)
        wanted = self.labels_for(types)
        want_faces = FACE in {t.strip().lower() for t in types}
        want_persons = PERSON in wanted
        hits = self._objects.detect(image, wanted, min_confidence) if wanted else []
        faces: list[FaceHit] = []
        if want_faces or want_persons:
            faces = self._faces.detect(image, min_confidence)
        found = [_object_found(hit) for hit in hits]
        if want_persons:
            person_boxes = [hit.box for hit in hits if hit.label == PERSON]
            height, width = image.shape[:2]
            found.extend(persons_from_faces(faces, person_boxes, width, height, min_confidence))
        if want_faces:
            found.extend(self._faces_found(image, faces, encodings and self.face_encodings))
        return found

    def labels_for(self, types: Iterable[str]) -> frozenset[str]:
        """The COCO labels selected by detection types and/or label names."""
        names = {coco_label(t) for t in types}
        return frozenset(
            label
            for label in self._objects.labels
            if label in names or detection_type_for(label) in names
        )

    def encode_faces(
        self, image_bgr: npt.NDArray[np.uint8], boxes: list[BoundingBox]
    ) -> list[tuple[float, ...]]:
        """A 128-float encoding (`dlib_resnet_v1`) per face box, in the order given.

        Works even when the detector was built with `face_encodings=False` (the encoder is then
        loaded on first use).
        """
        if not boxes:
            return []
        image = as_bgr(image_bgr)
        vectors = self._get_encoder().encode_faces(
            image, [(b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes]
        )
        return [tuple(float(v) for v in vector) for vector in vectors]

    def _get_encoder(self) -> FaceEncoder:
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = FaceEncoder(self._files)
            return self._encoder

    def _faces_found(
        self, image: npt.NDArray[np.uint8], faces: list[FaceHit], encode: bool
    ) -> list[FoundObject]:
        encodings: list[tuple[float, ...] | None] = [None] * len(faces)
        if encode and faces:
            encodings = list(self.encode_faces(image, [_bbox(face.box) for face in faces]))
        return [
            FoundObject(
                type=FACE,
                label=FACE,
                confidence=round(face.confidence, 4),
                box=_bbox(face.box),
                encoding=encoding,
                encoding_model=ENCODING_MODEL if encoding is not None else None,
                attributes={
                    "landmarks": {
                        name: [round(x, 1), round(y, 1)]
                        for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks, strict=True)
                    }
                },
            )
            for face, encoding in zip(faces, encodings, strict=True)
        ]


def persons_from_faces(
    faces: list[FaceHit],
    person_boxes: list[tuple[float, float, float, float]],
    width: int,
    height: int,
    min_confidence: float,
) -> list[FoundObject]:
    """Person boxes inferred from large, confident faces that no person box contains."""
    inferred: list[FoundObject] = []
    covered = list(person_boxes)
    for face in faces:
        x_min, y_min, x_max, y_max = face.box
        face_w, face_h = x_max - x_min, y_max - y_min
        if face.confidence < max(FACE_PERSON_MIN_CONFIDENCE, min_confidence):
            continue
        if face_h < max(FACE_PERSON_MIN_HEIGHT_PX, FACE_PERSON_MIN_HEIGHT_FRACTION * height):
            continue
        if any(_covered_fraction(face.box, box) >= 0.5 for box in covered):
            continue
        confidence = face.confidence * FACE_PERSON_CONFIDENCE_FACTOR
        if confidence < min_confidence:
            continue
        centre_x = (x_min + x_max) / 2
        half_width = max(face_w, face_h * 0.75) * _BODY_WIDTH_IN_FACES / 2
        box = (
            max(0.0, centre_x - half_width),
            max(0.0, y_min - _HEAD_TOP_MARGIN_IN_FACES * face_h),
            min(float(width), centre_x + half_width),
            min(float(height), y_min + _BODY_HEIGHT_IN_FACES * face_h),
        )
        covered.append(box)
        inferred.append(
            FoundObject(
                type=PERSON,
                label=PERSON,
                confidence=round(confidence, 4),
                box=_bbox(box),
                attributes={"source": "face"},
            )
        )
    return inferred


def decode_image(data: bytes) -> npt.NDArray[np.uint8] | None:
    """The image as BGR pixels, or None when the bytes are not an image OpenCV can read.

    EXIF orientation is ignored so that boxes are in the stored pixel grid, the one whose size
    `FrameImage` reports (Pillow's `Image.size` does not apply EXIF orientation either).
    """
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None or image.size == 0:
        return None
    return np.asarray(image, dtype=np.uint8)


def as_bgr(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The image as 3-channel BGR uint8 (accepts grey and BGRA); ValueError when unusable."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.size == 0:
        raise ValueError("expected a non-empty uint8 image array")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected a grey, BGR or BGRA image, got shape {image.shape}")


def _covered_fraction(
    inner: tuple[float, float, float, float], outer: tuple[float, float, float, float]
) -> float:
    """How much of `inner`'s area lies inside `outer` (0..1)."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max(1e-9, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return ix * iy / area


def _object_found(hit: ObjectHit) -> FoundObject:
    return FoundObject(
        type=detection_type_for(hit.label),
        label=hit.label,
        confidence=round(hit.confidence, 4),
        box=_bbox(hit.box),
    )


def _bbox(box: tuple[float, float, float, float]) -> BoundingBox:
    return BoundingBox(
        x_min=round(box[0], 2),
        y_min=round(box[1], 2),
        x_max=round(box[2], 2),
        y_max=round(box[3], 2),
    )
