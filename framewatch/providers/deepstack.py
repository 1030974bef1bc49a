"""DeepStack and CodeProject.AI Server: objects and faces over multipart POSTs.

Both servers speak the DeepStack API: `POST /v1/vision/detection` for objects and
`POST /v1/vision/face` (or `/v1/vision/face/recognize`) for faces, with the frame in the multipart
field `image` and `min_confidence` (and DeepStack's `api_key`) as form fields. Only the endpoints
the requested types need are called. CodeProject.AI wraps the same answer in extra envelope fields,
may give confidences in percent, and names recognised faces with `label` instead of `userid`; both
are accepted.

Options (`ProviderSpec.options`, validated by `DeepStackOptions`):
- `face_recognition` (bool, default false): use `/v1/vision/face/recognize`, which names faces.
- `custom_model` (str, default none): use the custom model `/v1/vision/custom/<name>` for objects.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from framewatch.providers.base import (
    FACE,
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
from framewatch.providers.http_call import ProviderResponse, send_with_retries
from framewatch.providers.wire import (
    Malformed,
    OptionsModel,
    WireModel,
    answer_errors,
    build_result,
    error_detail,
    keep,
    normalise_confidence,
    parse_answer,
    parse_options,
    percent_scale,
    pixel_box,
    probe_connection,
    read_json,
    refusal,
    require_base_url,
    threshold_text,
    wanted_types,
)

DETECTION_PATH = "/v1/vision/detection"
FACE_PATH = "/v1/vision/face"
RECOGNIZE_PATH = "/v1/vision/face/recognize"
CUSTOM_PATH = "/v1/vision/custom/{model}"
# DeepStack hangs when asked for min_confidence=0 (robmarkcole/HASS-Deepstack-object#177).
LOWEST_SENT_CONFIDENCE = 0.01
# Face names that mean "no identity": DeepStack says "unknown", some modules label faces "face".
NO_SUBJECT = frozenset({"", "unknown", "face"})


class DeepStackOptions(OptionsModel):
    """`ProviderSpec.options` of a `deepstack` provider."""

    face_recognition: bool = False
    custom_model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")


class _Prediction(WireModel):
    label: str | None = None
    userid: str | None = None
    confidence: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class _Answer(WireModel):
    success: bool
    predictions: list[_Prediction] | None = None
    error: str | None = None
    message: str | None = None
    # CodeProject.AI envelope; DeepStack sends `duration` (usually 0) instead.
    inference_ms: float | None = Field(default=None, alias="inferenceMs")
    module_id: str | None = Field(default=None, alias="moduleId")


def _no_face_found(error: str | None) -> bool:
    # CodeProject.AI's recognize answers `success: false, "No face found in image"` for an empty
    # frame; that is an empty result, not a failure.
    return error is not None and "no face" in error.lower()


def _body(response: ProviderResponse) -> Any:
    try:
        return response.response.json()
    except ValueError:
        return response.response.text[:1000]


class DeepStackProvider:
    """A DeepStack or CodeProject.AI Server; see the module docstring for options."""

    kind: ClassVar[str] = "deepstack"

    def __init__(self, spec: ProviderSpec, deps: ProviderDeps) -> None:
        self.spec = spec
        self._base = require_base_url(spec)
        self._options = parse_options(DeepStackOptions, spec)
        self._client = deps.http_client
        custom = self._options.custom_model
        self._object_path = CUSTOM_PATH.format(model=custom) if custom else DETECTION_PATH
        self._face_path = RECOGNIZE_PATH if self._options.face_recognition else FACE_PATH

    def capabilities(self) -> Capabilities:
        return Capabilities(
            detection_types=self.spec.detection_types,
            face_encodings=False,
            identification=self._options.face_recognition,
            remote=True,
        )

    async def detect(self, frame: FrameImage, types: frozenset[str]) -> ProviderResult:
        """Call the object endpoint if any non-face type is wanted, the face endpoint for faces.

        `raw` maps each endpoint called to its answer; `attempts` is the most any call needed.
        """
        wanted = wanted_types(self.spec, types)
        paths = [self._object_path] if wanted - {FACE} else []
        if FACE in wanted:
            paths.append(self._face_path)
        objects: list[FoundObject] = []
        raw: dict[str, Any] = {}
        responses: list[ProviderResponse] = []
        modules: list[str] = []
        for path in paths:
            response, found, module = await self._call(path, frame)
            responses.append(response)
            raw[path] = _body(response)
            objects.extend(obj for obj in found if keep(obj, wanted, self.spec))
            if module:
                modules.append(module)
        return build_result(objects, self._model_name(paths, modules), raw, responses)

    async def test_connection(self) -> ConnectionReport:
        return await probe_connection(self.detect, self.spec.detection_types)

    def _model_name(self, paths: list[str], modules: list[str]) -> str:
        if modules:
            return "codeproject.ai:" + "+".join(modules)
        return "deepstack:" + "+".join(path.removeprefix("/v1/vision/") for path in paths)

    def _form(self) -> dict[str, str]:
        threshold = max(self.spec.min_confidence, LOWEST_SENT_CONFIDENCE)
        form = {"min_confidence": threshold_text(threshold)}
        if self.spec.api_key:
            form["api_key"] = self.spec.api_key
        return form

    async def _call(
        self, path: str, frame: FrameImage
    ) -> tuple[ProviderResponse, list[FoundObject], str | None]:
        response = await send_with_retries(
            self._client,
            self.spec,
            "POST",
            self._base + path,
            files={"image": (frame.filename, frame.data, frame.content_type)},
            data=self._form(),
        )
        faces = path != self._object_path
        status = response.response.status_code
        if status >= 400:
            if faces and status not in (401, 403) and _no_face_found(error_detail(response)):
                return response, [], None
            raise refusal(self.spec, path, response)
        body = read_json(self.spec, path, response)
        with answer_errors(self.spec, path, response):
            answer = parse_answer(_Answer, body)
            if not answer.success:
                if faces and _no_face_found(answer.error):
                    return response, [], answer.module_id
                raise Malformed(f"success is false: {answer.error or answer.message or '?'}")
            if answer.predictions is None:
                raise Malformed("success is true but predictions are missing")
            return response, self._objects(path, answer, answer.predictions), answer.module_id

    def _objects(
        self, path: str, answer: _Answer, predictions: list[_Prediction]
    ) -> list[FoundObject]:
        scale = percent_scale(prediction.confidence for prediction in predictions)
        attributes: dict[str, Any] = {"endpoint": path}
        if answer.inference_ms is not None:
            attributes["provider_inference_ms"] = answer.inference_ms
        objects = []
        for index, prediction in enumerate(predictions):
            box = pixel_box(prediction.x_min, prediction.y_min, prediction.x_max, prediction.y_max)
            confidence = normalise_confidence(prediction.confidence, scale)
            if path == self._object_path:
                if prediction.label is None or not prediction.label.strip():
                    raise Malformed(f"predictions[{index}] has no label")
                label = prediction.label
                objects.append(
                    FoundObject(
                        detection_type_for(label), label, confidence, box, attributes=attributes
                    )
                )
            else:
                objects.append(self._face(prediction, confidence, box, attributes))
        return objects

    def _face(
        self,
        prediction: _Prediction,
        confidence: float,
        box: BoundingBox,
        attributes: dict[str, Any],
    ) -> FoundObject:
        name = prediction.userid if prediction.userid is not None else prediction.label
        subject = None if name is None or name.strip().lower() in NO_SUBJECT else name
        if self._face_path != RECOGNIZE_PATH:
            return FoundObject(FACE, FACE, confidence, box, subject=subject, attributes=attributes)
        # The recognize endpoint reports the match similarity (0 for unknown faces), not the
        # detection confidence; every face it returns passed the server's threshold, which we
        # sent, so that threshold stands in for a detection confidence it does not report.
        floor = max(self.spec.min_confidence, LOWEST_SENT_CONFIDENCE)
        return FoundObject(
            FACE,
            FACE,
            max(confidence, floor),
            box,
            subject=subject,
            subject_similarity=confidence if subject else None,
            attributes={**attributes, "reported_confidence": confidence},
        )
