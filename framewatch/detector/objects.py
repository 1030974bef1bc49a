"""YOLOv3-tiny object detection (80 COCO classes) with OpenCV's Darknet loader.

Two passes over each frame, merged by per-class non-maximum suppression:

* the main pass at `input_size` (416 by default) on the frame letterboxed into a square (aspect
  ratio kept), which finds small and mid-sized objects such as people across a street;
* a coarse pass at `coarse_size` (224) that costs a fifth of the main one. YOLOv3-tiny misses
  objects that fill most of a 416 input (a close-up person, a motorcycle filling the frame)
  because its anchors are small for them; at 224 the same object matches the anchors. Its boxes
  are kept only when large, since small objects are what this pass is bad at.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from framewatch.detector.weights import ModelFiles

# The Darknet names file uses VOC-era spellings; answers use the COCO ones (as DeepStack does).
DARKNET_TO_COCO = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "tvmonitor": "tv",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
}
COCO_TO_DARKNET = {coco: darknet for darknet, coco in DARKNET_TO_COCO.items()}

# Coarse-pass boxes smaller than this fraction of the frame's height (and of its area) are
# dropped: the main pass sees those better.
_COARSE_MIN_HEIGHT = 0.35
_COARSE_MIN_AREA = 0.08
_NMS_IOU = 0.45
_PAD_VALUE = 127


@dataclass(frozen=True, slots=True)
class ObjectHit:
    """One object: COCO label, confidence 0..1, box (x_min, y_min, x_max, y_max) in pixels."""

    label: str
    confidence: float
    box: tuple[float, float, float, float]


def coco_label(name: str) -> str:
    """The COCO spelling of a class name (accepts Darknet spellings such as `motorbike`)."""
    name = name.strip().lower()
    return DARKNET_TO_COCO.get(name, name)


class ObjectDetector:
    """YOLOv3-tiny on CPU. One instance is safe to share between threads (calls are serialised)."""

    def __init__(self, files: ModelFiles, *, input_size: int = 416, coarse_size: int = 224):
        for name, size in (("input_size", input_size), ("coarse_size", coarse_size)):
            if size < 64 or size % 32:
                raise ValueError(f"{name} must be a multiple of 32, at least 64")
        self.labels: tuple[str, ...] = _read_labels(files.yolo_names)
        self._main = _YoloPass(files, input_size)
        self._coarse = _YoloPass(files, coarse_size)

    def detect(
        self,
        image_bgr: npt.NDArray[np.uint8],
        wanted: frozenset[str],
        min_confidence: float,
    ) -> list[ObjectHit]:
        """Objects whose COCO label is in `wanted`, at or above `min_confidence`, best first."""
        wanted_ids = [i for i, label in enumerate(self.labels) if label in wanted]
        if not wanted_ids:
            return []
        height, width = image_bgr.shape[:2]
        candidates = self._hits(self._main, image_bgr, wanted_ids, min_confidence)
        for hit in self._hits(self._coarse, image_bgr, wanted_ids, min_confidence):
            x_min, y_min, x_max, y_max = hit.box
            box_height = (y_max - y_min) / height
            box_area = (x_max - x_min) * (y_max - y_min) / (width * height)
            if box_height >= _COARSE_MIN_HEIGHT or box_area >= _COARSE_MIN_AREA:
                candidates.append(hit)
        return _nms_per_label(candidates, _NMS_IOU)

    def _hits(
        self,
        yolo: _YoloPass,
        image_bgr: npt.NDArray[np.uint8],
        wanted_ids: list[int],
        min_confidence: float,
    ) -> list[ObjectHit]:
        rows, scale, (pad_x, pad_y) = yolo.run(image_bgr)
        # OpenCV's region layer already multiplies class scores by objectness.
        scores = rows[:, 5:][:, wanted_ids]
        best = scores.argmax(axis=1)
        confidence = scores[np.arange(len(rows)), best]
        keep = confidence >= min_confidence
        if not keep.any():
            return []
        rows, best, confidence = rows[keep], best[keep], confidence[keep]
        height, width = image_bgr.shape[:2]
        # Box centre and size are fractions of the padded square network input.
        cx = (rows[:, 0] * yolo.size - pad_x) / scale
        cy = (rows[:, 1] * yolo.size - pad_y) / scale
        bw = rows[:, 2] * yolo.size / scale
        bh = rows[:, 3] * yolo.size / scale
        x_min = np.clip(cx - bw / 2, 0, width)
        y_min = np.clip(cy - bh / 2, 0, height)
        x_max = np.clip(cx + bw / 2, 0, width)
        y_max = np.clip(cy + bh / 2, 0, height)
        hits = []
        for i in range(len(rows)):
            if x_max[i] - x_min[i] < 1 or y_max[i] - y_min[i] < 1:
                continue
            hits.append(
                ObjectHit(
                    label=self.labels[wanted_ids[int(best[i])]],
                    confidence=float(confidence[i]),
                    box=(float(x_min[i]), float(y_min[i]), float(x_max[i]), float(y_max[i])),
                )
            )
        return hits


class _YoloPass:
    """One Net per input size: OpenCV re-initialises every layer when a Net's input shape
    changes (measured: 150 ms instead of 22 ms per call when alternating 416 and 224), so each
    pass keeps its own Net and always feeds it the same square shape.
    """

    def __init__(self, files: ModelFiles, size: int) -> None:
        self.size = size
        self._net = cv2.dnn.readNetFromDarknet(str(files.yolo_config), str(files.yolo_weights))
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        # cv2.dnn.Net keeps per-call state (input blob, layer buffers): one caller at a time.
        self._lock = threading.Lock()

    def run(
        self, image_bgr: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], float, tuple[int, int]]:
        """Raw rows (cx, cy, w, h, objectness, 80 class scores), the scale and the padding."""
        blob, scale, padding = _letterbox_blob(image_bgr, self.size)
        with self._lock:
            self._net.setInput(blob)
            outputs = self._net.forward(self._outputs)
        rows = np.concatenate(
            [np.asarray(out, dtype=np.float32).reshape(-1, 85) for out in outputs]
        )
        return rows, scale, padding


def _read_labels(path: Path) -> tuple[str, ...]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    labels = tuple(coco_label(name) for name in names if name)
    if len(labels) != 80:
        raise ValueError(f"{path}: expected 80 class names, found {len(labels)}")
    return labels


def _letterbox_blob(
    image_bgr: npt.NDArray[np.uint8], size: int
) -> tuple[npt.NDArray[np.float32], float, tuple[int, int]]:
    """Scale the longer side to `size` and pad to a `size` square, keeping the aspect ratio.

    A stretched 4:3 street frame loses people; a letterboxed one keeps them.
    """
    height, width = image_bgr.shape[:2]
    scale = size / max(width, height)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = cv2.copyMakeBorder(
        resized,
        pad_y,
        size - new_h - pad_y,
        pad_x,
        size - new_w - pad_x,
        cv2.BORDER_CONSTANT,
        value=(_PAD_VALUE, _PAD_VALUE, _PAD_VALUE),
    )
    blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, (size, size), swapRB=True, crop=False)
    return np.asarray(blob, dtype=np.float32), scale, (pad_x, pad_y)


def _nms_per_label(hits: list[ObjectHit], iou: float) -> list[ObjectHit]:
    by_label: dict[str, list[ObjectHit]] = {}
    for hit in hits:
        by_label.setdefault(hit.label, []).append(hit)
    kept: list[ObjectHit] = []
    for group in by_label.values():
        kept.extend(
            group[i]
            for i in nms_indices([h.box for h in group], [h.confidence for h in group], iou)
        )
    kept.sort(key=lambda hit: -hit.confidence)
    return kept


def nms_indices(
    boxes: list[tuple[float, float, float, float]], scores: list[float], iou: float
) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    if not boxes:
        return []
    rects = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes]
    # score_threshold 0: callers have already filtered by confidence.
    indices = cv2.dnn.NMSBoxes(rects, scores, 0.0, iou)
    return [int(i) for i in np.asarray(indices).reshape(-1)]
