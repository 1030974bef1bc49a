"""CompreFace: faces, named by a recognition service, with embeddings from its calculator plugin.

One multipart POST per frame (field `file`, header `x-api-key`) to the recognition service's
`/api/v1/recognition/recognize` or the detection service's `/api/v1/detection/detect`.
CompreFace answers HTTP 400 `{"code": 28, "message": "No face is found in the given image"}` for a
frame without faces; that is an empty result. A missing, malformed or unknown key comes back as
HTTP 400 (code 20 or 26) or 404 (code 10) with a message naming the API key, or 401/403 from a
proxy in front; all become a `ProviderResponseError` about the key. CompreFace repeats an unknown
key in its message; the error shows it masked (as every answer: `http_call.without_key`).

Options (`ProviderSpec.options`, validated by `CompreFaceOptions`):
- `service` ("recognition" | "detection", default "recognition"): which service the key belongs to.
- `face_plugins` (str, default "calculator"): comma-separated plugins; "calculator" gives
  embeddings, "" asks for boxes only.
- `prediction_count` (int ≥ 1, default 1): subjects returned per face (recognition only).
- `limit` (int ≥ 0, default 0 = no limit): at most this many faces, biggest first.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from framewatch.providers.base import (
    FACE,
    Capabilities,
    ConnectionReport,
    FoundObject,
    FrameImage,
    ProviderDeps,
    ProviderResponseError,
    ProviderResult,
    ProviderSpec,
)
from framewatch.providers.http_call import ProviderResponse, send_with_retries
from framewatch.providers.wire import (
    OptionsModel,
    WireModel,
    answer_errors,
    build_result,
    describe,
    keep,
    normalise_confidence,
    parse_answer,
    parse_options,
    pixel_box,
    probe_connection,
    read_json,
    refusal,
    require_base_url,
    threshold_text,
    wanted_types,
)

PATHS = {"recognition": "/api/v1/recognition/recognize", "detection": "/api/v1/detection/detect"}
NO_FACE_CODE = 28
# Per-face plugin output kept as attributes when present.
ATTRIBUTE_KEYS = ("age", "gender", "mask", "pose", "landmarks", "execution_time")


class CompreFaceOptions(OptionsModel):
    """`ProviderSpec.options` of a `compreface` provider."""

    service: Literal["recognition", "detection"] = "recognition"
    face_plugins: str = Field(default="calculator", pattern=r"^[a-z0-9_,]*$")
    prediction_count: int = Field(default=1, ge=1)
    limit: int = Field(default=0, ge=0)


class _Box(WireModel):
    probability: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class _Subject(WireModel):
    subject: str
    similarity: float


class _Face(WireModel):
    box: _Box
    subjects: list[_Subject] | None = None
    embedding: list[float] | None = None
    age: dict[str, Any] | None = None
    gender: dict[str, Any] | None = None
    mask: dict[str, Any] | None = None
    pose: dict[str, Any] | None = None
    landmarks: list[Any] | None = None
    execution_time: dict[str, Any] | None = None


class _Answer(WireModel):
    result: list[_Face]
    # Only sent with `status=true`; values are class names such as "facenet.Calculator".
    plugins_versions: dict[str, str | None] | None = None


class _ErrorBody(WireModel):
    message: str
    code: int | None = None


class CompreFaceProvider:
    """A CompreFace recognition or detection service; see the module docstring for options."""

    kind: ClassVar[str] = "compreface"

    def __init__(self, spec: ProviderSpec, deps: ProviderDeps) -> None:
        self.spec = spec
        self._base = require_base_url(spec)
        self._options = parse_options(CompreFaceOptions, spec)
        self._client = deps.http_client
        self._path = PATHS[self._options.service]

    def capabilities(self) -> Capabilities:
        return Capabilities(
            detection_types=frozenset({FACE}) & self.spec.detection_types,
            face_encodings="calculator" in self._options.face_plugins.split(","),
            identification=self._options.service == "recognition",
            remote=True,
        )

    async def detect(self, frame: FrameImage, types: frozenset[str]) -> ProviderResult:
        """Find faces; makes no call unless "face" is among `types`. `raw` is CompreFace's JSON."""
        wanted = wanted_types(self.spec, types)
        if FACE not in wanted:
            return build_result([], self._model_name(None), None, [])
        if not self.spec.api_key:
            raise ProviderResponseError(
                f"{describe(self.spec)}: no API key set; CompreFace needs the key of its "
                f"{self._options.service} service"
            )
        response = await send_with_retries(
            self._client,
            self.spec,
            "POST",
            self._base + self._path,
            params=self._params(),
            headers={"x-api-key": self.spec.api_key},
            files={"file": (frame.filename, frame.data, frame.content_type)},
        )
        if response.response.status_code >= 400:
            return self._refused(response)
        body = read_json(self.spec, self._path, response)
        with answer_errors(self.spec, self._path, response):
            answer = parse_answer(_Answer, body)
            versions = answer.plugins_versions or {}
            faces = [self._face(face, versions) for face in answer.result]
        objects = [face for face in faces if keep(face, wanted, self.spec)]
        return build_result(objects, self._model_name(versions), body, [response])

    async def test_connection(self) -> ConnectionReport:
        return await probe_connection(self.detect, frozenset({FACE}))

    def _params(self) -> dict[str, str]:
        params = {
            "det_prob_threshold": threshold_text(self.spec.min_confidence),
            "limit": str(self._options.limit),
            # `status=true` is what makes CompreFace include `plugins_versions`.
            "status": "true",
        }
        if self._options.face_plugins:
            params["face_plugins"] = self._options.face_plugins
        if self._options.service == "recognition":
            params["prediction_count"] = str(self._options.prediction_count)
        return params

    def _model_name(self, versions: dict[str, str | None] | None) -> str:
        detector = (versions or {}).get("detector")
        name = f"compreface:{self._options.service}"
        return f"{name} ({detector})" if detector else name

    def _refused(self, response: ProviderResponse) -> ProviderResult:
        """An empty result for "no face found"; otherwise raise the refusal."""
        try:
            error: _ErrorBody | None = _ErrorBody.model_validate(response.response.json())
        except ValueError:  # not JSON, or JSON without CompreFace's error shape
            error = None
        if error is not None and error.code == NO_FACE_CODE:
            return build_result([], self._model_name(None), response.response.json(), [response])
        message = error.message if error is not None else None
        detail = None
        if error is not None:
            code = f" (code {error.code})" if error.code is not None else ""
            detail = error.message + code
        key_problem = message is not None and "api key" in message.lower().replace("-", " ")
        raise refusal(self.spec, self._path, response, detail, key_problem=key_problem)

    def _face(self, face: _Face, versions: dict[str, str | None]) -> FoundObject:
        box = face.box
        subject = similarity = None
        if face.subjects:
            best = max(face.subjects, key=lambda candidate: candidate.similarity)
            subject = best.subject
            similarity = normalise_confidence(best.similarity, what="subject similarity")
        encoding = encoding_model = None
        if face.embedding:
            encoding = tuple(face.embedding)
            encoding_model = f"compreface:{versions.get('calculator') or 'calculator'}"
        return FoundObject(
            type=FACE,
            label=FACE,
            confidence=normalise_confidence(box.probability, what="box.probability"),
            box=pixel_box(box.x_min, box.y_min, box.x_max, box.y_max),
            encoding=encoding,
            encoding_model=encoding_model,
            subject=subject,
            subject_similarity=similarity,
            attributes={
                key: getattr(face, key) for key in ATTRIBUTE_KEYS if getattr(face, key) is not None
            },
        )

