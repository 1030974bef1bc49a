"""Reading a send-frame request, multipart or JSON, into a `FrameSubmission`."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from framewatch.auth.service import Principal
from framewatch.cameras.schemas import CameraId
from framewatch.core.errors import (
    BadRequest,
    FrameTooLarge,
    InvalidFrame,
    UnsupportedMediaType,
    ValidationFailed,
)
from framewatch.detections.schemas import (
    CaptureTime,
    DetectionTypeList,
    SendFrameJson,
    SendMode,
)
from framewatch.detections.service import FrameSubmission, parse_types


class _FormFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera_id: CameraId
    detection_types: DetectionTypeList | None = None
    captured_at: CaptureTime | None = None
    mode: SendMode = "sync"


def validation_failed(exc: ValidationError) -> ValidationFailed:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    summary = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
    return ValidationFailed(summary or "the request is not valid", fields=errors)


async def read_submission(
    request: Request, principal: Principal, max_frame_bytes: int
) -> FrameSubmission:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, principal, max_frame_bytes)
    if content_type == "application/json":
        return await _read_json(request, principal)
    raise UnsupportedMediaType(
        "send a frame as multipart/form-data (field `image`) or application/json "
        f"(field `image_base64`), not {content_type or 'a body without a content type'!r}"
    )


async def _read_multipart(
    request: Request, principal: Principal, max_frame_bytes: int
) -> FrameSubmission:
    try:
        form = await request.form(max_files=1, max_fields=10)
    except MultiPartException as exc:
        raise BadRequest(f"the multipart body cannot be read: {exc.message}") from None
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise BadRequest("the multipart field `image` must be a file", field="image")
    fields: dict[str, Any] = {k: v for k, v in form.items() if k != "image"}
    if any(not isinstance(v, str) for v in fields.values()):
        raise BadRequest("only `image` may be a file")
    try:
        parsed = _FormFields.model_validate(fields)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    data = await image.read(max_frame_bytes + 1)
    if len(data) > max_frame_bytes:
        raise FrameTooLarge(f"the image is larger than the limit of {max_frame_bytes} bytes",
                            limit_bytes=max_frame_bytes)
    return FrameSubmission(
        camera_id=parsed.camera_id, data=data,
        detection_types=parse_types(parsed.detection_types),
        captured_at=parsed.captured_at, actor=principal.actor, mode=parsed.mode,
    )


async def _read_json(request: Request, principal: Principal) -> FrameSubmission:
    body = await request.body()
    try:
        parsed = SendFrameJson.model_validate_json(body)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    try:
        data = base64.b64decode(parsed.image_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFrame("`image_base64` is not valid base64", field="image_base64") from None
    return FrameSubmission(
        camera_id=parsed.camera_id, data=data,
        detection_types=parse_types(parsed.detection_types),
        captured_at=parsed.captured_at, actor=principal.actor, mode=parsed.mode,
    )
