"""128-d face encodings with dlib's ResNet (`dlib_face_recognition_resnet_model_v1`).

Each face is aligned with dlib's 5-point landmark model before encoding, as the ResNet was
trained on aligned 150x150 chips. Compare encodings by euclidean distance: dlib treats < 0.6 as
the same person. (Measured here: one face in two crops/scales 0.07-0.2 apart, different people
0.65-0.8.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import cv2
import dlib
import numpy as np
import numpy.typing as npt

from framewatch.detector.weights import ModelFiles

ENCODING_MODEL = "dlib_resnet_v1"
ENCODING_SIZE = 128

Box = tuple[float, float, float, float]


class FaceEncoder:
    """dlib ResNet face encoder on CPU; safe to share between threads (calls are serialised)."""

    model_name = ENCODING_MODEL

    def __init__(self, files: ModelFiles) -> None:
        self._landmarks = dlib.shape_predictor(str(files.face_landmarks_5))
        self._resnet = dlib.face_recognition_model_v1(str(files.face_recognition_resnet))
        self._lock = threading.Lock()

    def encode_faces(
        self, image_bgr: npt.NDArray[np.uint8], boxes: Sequence[Box]
    ) -> list[npt.NDArray[np.float32]]:
        """One float32 array of shape (128,) per box (x_min, y_min, x_max, y_max, pixels)."""
        if not boxes:
            return []
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        with self._lock:
            shapes = dlib.full_object_detections()
            for box in boxes:
                shapes.append(self._landmarks(rgb, _landmark_rect(box)))
            descriptors = self._resnet.compute_face_descriptor(rgb, shapes)
        return [np.asarray(d, dtype=np.float32).reshape(ENCODING_SIZE) for d in descriptors]


def _landmark_rect(box: Box) -> dlib.rectangle:
    """The square dlib's landmark model expects, from a face box of any detector.

    The 5-point model was trained on dlib's frontal-detector boxes: square, brows to chin.
    CenterFace (and most detectors) draw taller boxes that include the forehead; a square as
    wide as the box, around its centre, matches dlib's boxes within a few pixels.
    """
    x_min, y_min, x_max, y_max = box
    side = max(1.0, min(x_max - x_min, y_max - y_min))
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    # Not clamped to the image: dlib reads pixels outside it as black, which is better for a face
    # cut by the frame's edge than a squashed rectangle.
    left, top = round(cx - side / 2), round(cy - side / 2)
    return dlib.rectangle(left, top, left + round(side), top + round(side))
