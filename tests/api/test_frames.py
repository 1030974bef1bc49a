"""GET /api/v1/frames/{id}/image: the stored bytes as sent, or a JPEG with the boxes drawn."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from framewatch.models import Frame
from tests.api.helpers import add_camera, assert_error, post_frame, rows_of
from tests.api_fixtures import Api
from tests.conftest import frame_bytes

# Pixels this close to a box's outline, or in the caption band at its top-left corner, may be
# drawn on; everything else must look as before (up to the JPEG re-encoding). A caption sits
# above the box, or just inside it when the box touches the top of the frame.
MARGIN = 10
CAPTION_ROWS = (40, 25)  # rows above and below the box's top edge
CAPTION_WIDTH = 220  # columns from the box's left edge


def image_url(frame_id: int | str, annotate: bool = False) -> str:
    return f"/api/v1/frames/{frame_id}/image" + ("?annotate=true" if annotate else "")


async def sent(api: Api, image: str | bytes, camera_id: str = "gate") -> dict[str, Any]:
    response = await post_frame(api, image, camera_id=camera_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def outline(shape: tuple[int, ...], box: dict[str, float]) -> np.ndarray:
    """The pixels on the box's four edges."""
    height, width = shape[:2]
    x0, y0 = int(box["x_min"]), int(box["y_min"])
    x1, y1 = min(int(box["x_max"]), width - 1), min(int(box["y_max"]), height - 1)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1 + 1, [x0, x1]] = True
    mask[[y0, y1], x0:x1 + 1] = True
    return mask


def near_any(shape: tuple[int, ...], boxes: list[dict[str, float]]) -> np.ndarray:
    """Pixels within MARGIN of an outline, or in a caption band."""
    height, width = shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = (int(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
        band = np.zeros_like(mask)
        band[max(y0 - MARGIN, 0):y1 + MARGIN + 1, max(x0 - MARGIN, 0):x1 + MARGIN + 1] = True
        band[y0 + MARGIN:max(y1 - MARGIN, y0 + MARGIN),
             x0 + MARGIN:max(x1 - MARGIN, x0 + MARGIN)] = False
        band[max(y0 - CAPTION_ROWS[0], 0):y0 + CAPTION_ROWS[1],
             max(x0 - MARGIN, 0):x0 + CAPTION_WIDTH] = True
        mask |= band
    return mask


def as_png(name: str) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(frame_bytes(name))) as image:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_the_image_comes_back_byte_for_byte_with_its_content_type(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api)
    jpeg = frame_bytes("astronaut.jpg")
    png = as_png("motorcycle.jpg")
    for data, content_type in ((jpeg, "image/jpeg"), (png, "image/png")):
        frame_id = (await sent(api, data))["frame_id"]
        response = await api.client.get(image_url(frame_id), headers=api.auth("viewer"))
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.content == data
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["cache-control"] == "private, max-age=3600"
    explicit = await api.client.get(image_url(frame_id) + "?annotate=false",
                                    headers=api.auth("viewer"))
    assert explicit.content == png


@pytest.mark.parametrize("name", ["astronaut.jpg", "street.jpg"])
async def test_annotate_draws_the_boxes_and_leaves_the_rest_alone(api: Api, name: str) -> None:
    await add_camera(api)
    original = frame_bytes(name)
    answer = await sent(api, original)
    boxes = [d["bbox"] for d in answer["detections"]]
    assert len(boxes) >= 2

    response = await api.client.get(image_url(answer["frame_id"], annotate=True),
                                    headers=api.auth("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as drawn:
        assert drawn.format == "JPEG"
        with Image.open(io.BytesIO(original)) as before:
            assert drawn.size == before.size
    difference = np.abs(pixels(response.content) - pixels(original)).sum(axis=2)

    # Every box is drawn: its outline changed colour strongly.
    for box in boxes:
        on_line = difference[outline(difference.shape, box)]
        assert on_line.mean() > 100, box
    # Away from the boxes and captions only re-encoding noise remains.
    far = difference[~near_any(difference.shape, boxes)]
    assert far.size > difference.size // 3
    assert far.mean() < 8 and np.percentile(far, 99) < 40
    assert far.max() < 120  # a drawn line or caption changes a pixel by 200 and more


async def test_annotate_without_detections_returns_the_same_picture(api: Api) -> None:
    await add_camera(api)
    original = frame_bytes("coffee.jpg")
    answer = await sent(api, original)
    assert answer["detections"] == []
    response = await api.client.get(image_url(answer["frame_id"], annotate=True),
                                    headers=api.auth("viewer"))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content != original  # re-encoded,
    difference = np.abs(pixels(response.content) - pixels(original)).sum(axis=2)
    assert difference.shape == (400, 600) and difference.mean() < 8  # but nothing drawn


async def test_a_png_frame_is_annotated_as_a_jpeg(api: Api) -> None:
    await add_camera(api)
    png = as_png("motorcycle.jpg")
    answer = await sent(api, png)
    [vehicle] = answer["detections"]
    response = await api.client.get(image_url(answer["frame_id"], annotate=True),
                                    headers=api.auth("viewer"))
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    difference = np.abs(pixels(response.content) - pixels(png)).sum(axis=2)
    assert difference.shape == (432, 640)
    assert difference[outline(difference.shape, vehicle["bbox"])].mean() > 100


@pytest.mark.parametrize("frame_id", ["999999", "0", "-1", str(2**63), str(10**30)])
async def test_an_unknown_frame_is_404(api_any_db: Api, frame_id: str) -> None:
    api = api_any_db
    for annotate in (False, True):
        response = await api.client.get(image_url(frame_id, annotate),
                                        headers=api.auth("viewer"))
        assert_error(response, 404, "not_found")


async def test_bad_parameters_get_422(api: Api) -> None:
    for url in (image_url("abc"), image_url(1) + "?annotate=perhaps"):
        assert_error(await api.client.get(url, headers=api.auth("viewer")), 422,
                     "validation_error")


async def test_a_frame_whose_file_vanished_is_404_not_500(api_any_db: Api) -> None:
    api = api_any_db
    await add_camera(api)
    answer = await sent(api, "astronaut.jpg")
    [frame] = await rows_of(api, Frame, Frame.id == answer["frame_id"])
    (api.settings.frames_dir / frame.storage_path).unlink()
    for annotate in (False, True):
        response = await api.client.get(image_url(answer["frame_id"], annotate),
                                        headers=api.auth("viewer"))
        body = assert_error(response, 404, "not_found")
        assert "no longer stored" in body["detail"]
    # The frame's record and detections are still served.
    detection_id = answer["detections"][0]["id"]
    found = await api.client.get(f"/api/v1/detections/{detection_id}", headers=api.auth("viewer"))
    assert found.status_code == 200 and found.json()["frame_id"] == answer["frame_id"]
