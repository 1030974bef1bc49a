"""Rebuild the test photographs in this folder (and the detector's sample frame) from their sources.

Run once by hand; the outputs are committed so that `make test` needs neither root nor downloads:

    pip install scikit-image matplotlib
    apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb /tmp/opencv-doc
    python tests/data/make_frames.py /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data

SOURCES.md beside this script says where each photograph comes from and under which licence.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

HERE = Path(__file__).parent
SAMPLE = HERE.parent.parent / "framewatch" / "detector" / "samples" / "astronaut.jpg"
QUALITY = 85
STREET_FRAME = 600  # vtest.avi: six people walking, one near the camera, a car and a van parked
# basketball1/2.png: the columns (x from, x to) around each of the two men.
PLAYERS = {"left": (0, 240), "right": (400, 640)}


def write_jpeg(path: Path, image: npt.NDArray[np.uint8]) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    assert ok, path
    path.write_bytes(data.tobytes())
    print(f"{path.name}: {image.shape[1]}x{image.shape[0]}, {len(data)} bytes")


def rgb_to_bgr(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), dtype=np.uint8)


def video_frame(path: Path, index: int) -> npt.NDArray[np.uint8]:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = capture.read()
    capture.release()
    assert ok, f"cannot read frame {index} of {path}"
    return np.asarray(image, dtype=np.uint8)


def main(opencv_examples: Path) -> None:
    import matplotlib.cbook
    import skimage.data

    astronaut = rgb_to_bgr(skimage.data.astronaut())
    write_jpeg(HERE / "astronaut.jpg", astronaut)
    small = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
    write_jpeg(SAMPLE, np.asarray(small, dtype=np.uint8))
    write_jpeg(HERE / "coffee.jpg", rgb_to_bgr(skimage.data.coffee()))
    motorcycle = rgb_to_bgr(skimage.data.stereo_motorcycle()[0])
    write_jpeg(HERE / "motorcycle.jpg", np.asarray(
        cv2.resize(motorcycle, (640, 432), interpolation=cv2.INTER_AREA), dtype=np.uint8))
    grace = cv2.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    write_jpeg(HERE / "grace_hopper.jpg", np.asarray(grace, dtype=np.uint8))
    street = video_frame(opencv_examples / "vtest.avi", STREET_FRAME)
    write_jpeg(HERE / "street.jpg", np.asarray(
        cv2.resize(street, (640, 480), interpolation=cv2.INTER_AREA), dtype=np.uint8))
    desk = cv2.imread(str(opencv_examples / "right06.jpg"), cv2.IMREAD_COLOR)
    write_jpeg(HERE / "desk_closeup.jpg", np.asarray(desk, dtype=np.uint8))
    # The same man, seen by the other camera of the stereo pair: a second photo of him.
    other_side = cv2.imread(str(opencv_examples / "left06.jpg"), cv2.IMREAD_COLOR)
    write_jpeg(HERE / "desk_closeup_left.jpg", np.asarray(other_side, dtype=np.uint8))
    # Two men in two consecutive frames: each man cut out of each frame, one face per photo.
    for index in (1, 2):
        players = cv2.imread(str(opencv_examples / f"basketball{index}.png"), cv2.IMREAD_COLOR)
        for side, (x0, x1) in PLAYERS.items():
            crop = np.asarray(players[0:320, x0:x1], dtype=np.uint8)
            write_jpeg(HERE / f"player_{side}_{index}.jpg", crop)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
