"""Rebuild the demo camera's frames in this folder from OpenCV's `vtest.avi` street scene.

Run once by hand; the outputs are committed so that `make run` needs neither root nor downloads:

    apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb /tmp/opencv-doc
    python framewatch/demo/frames/make_demo_frames.py \
        /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi

SOURCES.md beside this script says where the video comes from and under which licence.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).parent
# vtest.avi is 768×576 at 10 fps. Frames 560-705, every 5th: 15 s of the street with people
# crossing near the camera, as 30 frames that replay in real time at the demo's 2 fps.
FIRST, STEP, COUNT = 560, 5, 30
SIZE = (320, 240)
QUALITY = 80


def main(video: Path) -> None:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        sys.exit(f"cannot open {video}")
    for old in HERE.glob("street-*.jpg"):
        old.unlink()
    index, written = 0, 0
    while written < COUNT:
        ok, image = capture.read()
        if not ok:
            sys.exit(f"{video} ended at frame {index}, before frame {FIRST + STEP * COUNT}")
        if index >= FIRST and (index - FIRST) % STEP == 0:
            small = np.asarray(cv2.resize(image, SIZE, interpolation=cv2.INTER_AREA))
            ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            assert ok
            path = HERE / f"street-{written:02d}.jpg"
            path.write_bytes(data.tobytes())
            print(f"{path.name}: frame {index} of {video.name}, {len(data)} bytes")
            written += 1
        index += 1
    capture.release()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
