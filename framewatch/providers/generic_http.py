"""Any JSON detection endpoint, its request and answer described by an `HttpMapping`.

The frame goes out as multipart (`file_field`) or as base64 in a JSON body (`image_field`); the
answer's list of objects is found at `results_path` and each object's label, confidence and box are
read with the configured keys. See `HttpMapping` for every option and its default.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from framewatch.providers.base import (
    BoundingBox,
    Capabilities,
    ConnectionReport,
    FoundObject,
    FrameImage,
    ProviderDeps,
    ProviderResult,
    ProviderSpec,
    detection_type_for,
)
from framewatch.providers.http_call import send_with_retries
from framewatch.providers.wire import (
    Malformed,
    OptionsModel,
    answer_errors,
    build_result,
    finite_number,
    keep,
    normalise_confidence,
    parse_options,
    pixel_box,
    probe_connection,
    read_json,
    refusal,
    require_base_url,
    wanted_types,
)

# Normalised coordinates may overshoot 0..1 slightly (boxes touching the border); more is a mistake.
NORMALIZED_SLACK = 0.01


class HttpMapping(OptionsModel):
    """`ProviderSpec.options` of an `http` provider: how to call the endpoint and read its answer.

    Box formats: "xyxy" reads `x_min_key`..`y_max_key`; "xywh" reads the top-left corner from
    `x_key`/`y_key` and the size from `width_key`/`height_key`; "cxcywh" reads the centre from
    `x_key`/`y_key`. With `box_array_key` the four numbers come from one array, in `box_format`
    order. `box_key` names a nested object holding the coordinates (default: the item itself).
    """

    path: str = Field(default="/detect", pattern=r"^/")
    method: Literal["POST", "PUT"] = "POST"
    request_format: Literal["multipart", "base64_json"] = "multipart"
    file_field: str = "image"
    image_field: str = "image"
    form: dict[str, str] = Field(default_factory=dict)
    json_fields: dict[str, Any] = Field(default_factory=dict, alias="json")
    query: dict[str, str] = Field(default_factory=dict)
    api_key_header: str = "Authorization"
    api_key_prefix: str = "Bearer "
    results_path: str = ""
    label_key: str = "label"
    # None: the endpoint gives no confidence; every object counts as 1.0.
    confidence_key: str | None = "confidence"
    confidence_scale: Literal[1, 100] = 1
    box_key: str | None = None
    box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy"
    x_min_key: str = "x_min"
    y_min_key: str = "y_min"
    x_max_key: str = "x_max"
    y_max_key: str = "y_max"
    x_key: str = "x"
    y_key: str = "y"
    width_key: str = "width"
    height_key: str = "height"
    box_array_key: str | None = None
    coordinates: Literal["pixels", "normalized"] = "pixels"
    type_key: str | None = None
    subject_key: str | None = None
    default_label: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _fields_match_format(self) -> HttpMapping:
        if self.request_format == "multipart" and self.json_fields:
            raise ValueError('"json" fields need request_format "base64_json"')
        if self.request_format == "base64_json" and self.form:
            raise ValueError('"form" fields need request_format "multipart"')
        return self


def _walk(body: Any, path: str) -> Any:
    """The value at a dotted path ("data.objects", "results.0.boxes"); "" is the body itself."""
    value = body
    walked = []
    for part in path.split(".") if path else []:
        walked.append(part)
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise Malformed(f"results_path {path!r}: nothing at {'.'.join(walked)!r}")
    return value


def _number(item: dict[str, Any], key: str, where: str) -> float:
    if key not in item:
        raise Malformed(f"{where} has no {key!r}")
    return finite_number(item[key], f"{where}.{key}")


class GenericHttpProvider:
    """A JSON endpoint read through the `HttpMapping` in `spec.options`."""

    kind: ClassVar[str] = "http"

    def __init__(self, spec: ProviderSpec, deps: ProviderDeps) -> None:
        self.spec = spec
        self._base = require_base_url(spec)
        self._mapping = parse_options(HttpMapping, spec)
        self._client = deps.http_client

    def capabilities(self) -> Capabilities:
        return Capabilities(
            detection_types=self.spec.detection_types,
            face_encodings=False,
            identification=self._mapping.subject_key is not None,
            remote=True,
        )

    async def detect(self, frame: FrameImage, types: frozenset[str]) -> ProviderResult:
        """One call; `raw` is the endpoint's JSON answer."""
        mapping = self._mapping
        response = await send_with_retries(
            self._client,
            self.spec,
            mapping.method,
            self._base + mapping.path,
            params=mapping.query,
            headers=self._headers(),
            **self._payload(frame),
        )
        if response.response.status_code >= 400:
            raise refusal(self.spec, mapping.path, response)
        body = read_json(self.spec, mapping.path, response)
        with answer_errors(self.spec, mapping.path, response):
            items = _walk(body, mapping.results_path)
            if not isinstance(items, list):
                found = type(items).__name__
                raise Malformed(f"results_path {mapping.results_path!r} holds {found}, not a list")
            found_objects = [self._object(item, index, frame) for index, item in enumerate(items)]
        wanted = wanted_types(self.spec, types)
        objects = [obj for obj in found_objects if keep(obj, wanted, self.spec)]
        return build_result(objects, f"http:{mapping.path}", body, [response])

    async def test_connection(self) -> ConnectionReport:
        return await probe_connection(self.detect, self.spec.detection_types)

    def _headers(self) -> dict[str, str]:
        if not self.spec.api_key:
            return {}
        return {self._mapping.api_key_header: self._mapping.api_key_prefix + self.spec.api_key}

    def _payload(self, frame: FrameImage) -> dict[str, Any]:
        mapping = self._mapping
        if mapping.request_format == "multipart":
            files = {mapping.file_field: (frame.filename, frame.data, frame.content_type)}
            return {"files": files, "data": mapping.form}
        image = base64.b64encode(frame.data).decode("ascii")
        return {"json": {**mapping.json_fields, mapping.image_field: image}}

    def _object(self, item: Any, index: int, frame: FrameImage) -> FoundObject:
        mapping = self._mapping
        where = f"result[{index}]"
        if not isinstance(item, dict):
            raise Malformed(f"{where} should be an object, got {type(item).__name__}")
        label = item.get(mapping.label_key)
        label = mapping.default_label if label is None else label
        if not isinstance(label, str) or not label.strip():
            raise Malformed(f"{where}.{mapping.label_key} should be a non-empty string")
        confidence = 1.0
        if mapping.confidence_key is not None:
            value = _number(item, mapping.confidence_key, where)
            confidence = normalise_confidence(value, float(mapping.confidence_scale))
        kind = detection_type_for(label)
        if mapping.type_key is not None and item.get(mapping.type_key) is not None:
            if not isinstance(item[mapping.type_key], str):
                raise Malformed(f"{where}.{mapping.type_key} should be a string")
            kind = item[mapping.type_key].strip().lower()
        subject = item.get(mapping.subject_key) if mapping.subject_key else None
        if subject is not None and not isinstance(subject, str):
            raise Malformed(f"{where}.{mapping.subject_key} should be a string")
        return FoundObject(kind, label, confidence, self._box(item, where, frame), subject=subject)

    def _box(self, item: dict[str, Any], where: str, frame: FrameImage) -> BoundingBox:
        mapping = self._mapping
        holder: Any = item
        if mapping.box_key is not None:
            holder = item.get(mapping.box_key)
            where = f"{where}.{mapping.box_key}"
        if mapping.box_array_key is not None:
            array = holder.get(mapping.box_array_key) if isinstance(holder, dict) else None
            where = f"{where}.{mapping.box_array_key}"
            if not isinstance(array, list) or len(array) != 4:
                raise Malformed(f"{where} should be an array of 4 numbers")
            a, b, c, d = (finite_number(value, where) for value in array)
        elif isinstance(holder, dict):
            keys = (
                (mapping.x_min_key, mapping.y_min_key, mapping.x_max_key, mapping.y_max_key)
                if mapping.box_format == "xyxy"
                else (mapping.x_key, mapping.y_key, mapping.width_key, mapping.height_key)
            )
            a, b, c, d = (_number(holder, key, where) for key in keys)
        else:
            raise Malformed(f"{where} should be an object holding the box")
        if mapping.coordinates == "normalized":
            if not all(-NORMALIZED_SLACK <= v <= 1 + NORMALIZED_SLACK for v in (a, b, c, d)):
                raise Malformed(f"{where} has coordinates outside 0..1 but they are 'normalized'")
            a, b, c, d = a * frame.width, b * frame.height, c * frame.width, d * frame.height
        if mapping.box_format == "xywh":
            return self._sized(a, b, c, d, where)
        if mapping.box_format == "cxcywh":
            return self._sized(a - c / 2, b - d / 2, c, d, where)
        return pixel_box(a, b, c, d)

    @staticmethod
    def _sized(x: float, y: float, width: float, height: float, where: str) -> BoundingBox:
        if width < 0 or height < 0:
            raise Malformed(f"{where} has a negative width or height")
        return pixel_box(x, y, x + width, y + height)
