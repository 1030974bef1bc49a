"""The built-in, offline detector (YOLOv3-tiny + CenterFace + dlib ResNet face encodings).

Importing this package is cheap: the models load when a `BuiltinDetector` is created, with
`from framewatch.detector.detector import BuiltinDetector`.
"""

from framewatch.detector.weights import (
    INSTALL_HINT,
    DetectorUnavailable,
    ModelFiles,
    locate_model_files,
    sample_frame,
    sample_frame_path,
)

__all__ = [
    "INSTALL_HINT",
    "DetectorUnavailable",
    "ModelFiles",
    "locate_model_files",
    "sample_frame",
    "sample_frame_path",
]
