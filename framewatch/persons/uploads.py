"""Reading a photo upload (multipart field `image`), with the frame size limit."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from framewatch.core.errors import BadRequest, FrameTooLarge, UnsupportedMediaType


async def read_photo(request: Request, max_bytes: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise UnsupportedMediaType("send the photo as multipart/form-data, field `image`")
    try:
        form = await request.form(max_files=1, max_fields=5)
    except MultiPartException as exc:
        raise BadRequest(f"the multipart body cannot be read: {exc.message}") from None
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise BadRequest("the multipart field `image` must be a file", field="image")
    data = await image.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FrameTooLarge(f"the photo is larger than the limit of {max_bytes} bytes",
                            limit_bytes=max_bytes)
    return data
