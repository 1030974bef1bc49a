"""Identification: every face a provider found is encoded with the built-in encoder (unless it
already is) and matched against the gallery; a provider's own subject is linked to a person
when it is mapped. So results from every provider land in one gallery, on framewatch's own
encodings.

Runs after the provider's answer and before anything is stored, off the event loop for the
encoding (about 100 ms per face on one core), and never inside a database transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import numpy as np

from framewatch.detector.detector import decode_image
from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.detector.weights import DetectorUnavailable
from framewatch.providers.base import FACE, FoundObject, FrameImage, ProviderResult, ProviderSpec
from framewatch.runtime import Runtime

log = logging.getLogger(__name__)


async def identify_faces(
    runtime: Runtime, spec: ProviderSpec, image: FrameImage, result: ProviderResult
) -> ProviderResult:
    """The result with faces encoded (built-in model) and matched to the gallery."""
    faces = [i for i, obj in enumerate(result.objects) if obj.type == FACE]
    if not faces or not runtime.settings.identify_faces:
        return result
    objects = list(result.objects)
    missing = [i for i in faces if objects[i].encoding_model != ENCODING_MODEL]
    if missing:
        try:
            encodings = await asyncio.to_thread(_encode, runtime, image,
                                                [objects[i] for i in missing])
        except DetectorUnavailable as exc:
            log.warning("faces not encoded (%s); they stay unidentified", exc)
            encodings = []
        for index, encoding in zip(missing, encodings, strict=False):
            provider_encoding = objects[index].encoding
            attributes = dict(objects[index].attributes)
            if provider_encoding is not None:  # the provider's own embedding is not comparable
                attributes["provider_encoding_model"] = objects[index].encoding_model
            objects[index] = dataclasses.replace(
                objects[index], encoding=tuple(float(v) for v in encoding),
                encoding_model=ENCODING_MODEL, attributes=attributes)
    for index in faces:
        objects[index] = await _match(runtime, spec, objects[index])
    return dataclasses.replace(result, objects=objects)


def _encode(runtime: Runtime, image: FrameImage, faces: list[FoundObject]) -> list[np.ndarray]:
    pixels = decode_image(image.data)
    if pixels is None:
        return []
    detector = runtime.provider_deps.builtin_detector()
    return [np.asarray(e, dtype=np.float32)
            for e in detector.encode_faces(pixels, [f.box for f in faces])]


async def _match(runtime: Runtime, spec: ProviderSpec, face: FoundObject) -> FoundObject:
    if face.encoding is not None and face.encoding_model is not None:
        match = await runtime.gallery.match(np.asarray(face.encoding, dtype=np.float32),
                                            face.encoding_model)
        if match is not None:
            return dataclasses.replace(face, person_id=match.person_id,
                                       person_similarity=match.similarity)
    if face.subject:  # the provider identified it; is its subject linked to a person?
        linked = await runtime.gallery.subject(spec.name, face.subject)
        if linked is not None:
            return dataclasses.replace(face, person_id=linked[0],
                                       person_similarity=face.subject_similarity)
    return face
