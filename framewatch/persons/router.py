"""`/api/v1/persons`: the gallery, registering faces, subject links, sightings, search."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime

from framewatch.auth.dependencies import PersonsAdmin, PersonsReader
from framewatch.auth.permissions import Permission
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.errors import BadRequest, Forbidden
from framewatch.core.openapi import AUTH_ERRORS, error_responses
from framewatch.models import PersonFace
from framewatch.persons import service
from framewatch.persons.schemas import (
    FaceFromDetection,
    FaceOut,
    PersonCreate,
    PersonOut,
    PersonPatch,
    SightingPage,
    SimilarFaces,
    SubjectLink,
    SubjectOut,
)
from framewatch.persons.sightings import sightings, similar_faces
from framewatch.persons.uploads import read_photo

router = APIRouter(prefix="/api/v1/persons", tags=["persons"])

PHOTO_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "string", "format": "binary"}}}}}}}


def person_out(person: object, faces: int) -> PersonOut:
    return PersonOut.model_validate({**vars(person), "faces": faces})


def face_out(face: PersonFace, with_encoding: bool = False) -> FaceOut:
    encoding = (np.frombuffer(face.encoding, dtype="<f4").astype(float).round(6).tolist()
                if with_encoding else None)
    return FaceOut(id=face.id, person_id=face.person_id, encoding_model=face.encoding_model,
                   source_frame_id=face.source_frame_id, box=face.box, quality=face.quality,
                   created_at=face.created_at, encoding=encoding)


@router.get("", response_model=list[PersonOut], responses=AUTH_ERRORS)
async def list_persons(session: Session, _: PersonsReader) -> list[PersonOut]:
    return [person_out(p, n) for p, n in await service.list_persons(session)]


@router.post("", response_model=PersonOut, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(409)})
async def create_person(session: Session, principal: PersonsAdmin, body: PersonCreate
                        ) -> PersonOut:
    person = await service.create_person(session, body, actor=principal.actor)
    await session.commit()
    return person_out(person, 0)


@router.get("/{person_id}", response_model=PersonOut,
            responses={**AUTH_ERRORS, **error_responses(404)})
async def get_person(session: Session, _: PersonsReader, person_id: int) -> PersonOut:
    person = await service.get_person(session, person_id)
    return person_out(person, len(await service.list_faces(session, person_id)))


@router.patch("/{person_id}", response_model=PersonOut,
              responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def update_person(
    session: Session, principal: PersonsAdmin, person_id: int, body: PersonPatch
) -> PersonOut:
    person = await service.update_person(session, person_id, body, actor=principal.actor)
    await session.commit()
    return person_out(person, len(await service.list_faces(session, person_id)))


@router.delete("/{person_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def delete_person(
    session: Session, runtime: RuntimeDep, principal: PersonsAdmin, person_id: int,
    erase_sightings: bool = False,
) -> Response:
    """Delete the person with their face encodings and crops; their sightings are unlinked
    (and with `erase_sightings=true` the sightings' face encodings erased too)."""
    await service.delete_person(session, runtime, person_id, erase_sightings=erase_sightings,
                                actor=principal.actor)
    await session.commit()
    runtime.gallery.invalidate()
    return Response(status_code=204)


@router.get("/{person_id}/faces", response_model=list[FaceOut],
            responses={**AUTH_ERRORS, **error_responses(404)})
async def list_faces(
    session: Session, principal: PersonsReader, person_id: int,
    include: Literal["encoding"] | None = None,
) -> list[FaceOut]:
    """The registered faces; encodings (biometric data) only with `include=encoding`, for
    admins."""
    if include == "encoding" and not principal.allows(Permission.PERSONS_ADMIN):
        raise Forbidden("encodings are shown to persons:admin only",
                        required_permission=Permission.PERSONS_ADMIN.value)
    faces = await service.list_faces(session, person_id)
    return [face_out(f, include == "encoding") for f in faces]


@router.post("/{person_id}/faces", response_model=FaceOut, status_code=201,
             openapi_extra=PHOTO_BODY,
             responses={**AUTH_ERRORS, **error_responses(400, 404, 413, 415)})
async def add_face(
    request: Request, session: Session, runtime: RuntimeDep, principal: PersonsAdmin,
    person_id: int,
) -> FaceOut:
    """Register a face from a photo (multipart field `image`) that shows exactly one face;
    otherwise 422 saying how many were found."""
    photo = await read_photo(request, runtime.settings.max_frame_bytes)
    face = await service.add_face_from_photo(session, runtime, person_id, photo,
                                             actor=principal.actor)
    await session.commit()
    return face_out(face)


@router.post("/{person_id}/faces/from-detection", response_model=FaceOut, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(404)})
async def add_face_from_detection(
    session: Session, runtime: RuntimeDep, principal: PersonsAdmin, person_id: int,
    body: FaceFromDetection,
) -> FaceOut:
    """Register a face that was seen: a past face detection whose frame is still stored."""
    face = await service.add_face_from_detection(
        session, runtime, person_id, body.detection_id, actor=principal.actor,
        camera_scope=principal.camera_scope)
    await session.commit()
    return face_out(face)


@router.get("/{person_id}/faces/{face_id}/crop", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **AUTH_ERRORS,
                       **error_responses(404)})
async def face_crop(
    session: Session, runtime: RuntimeDep, _: PersonsReader, person_id: int, face_id: int
) -> Response:
    face = await service.get_face(session, person_id, face_id)
    if not face.crop_path:
        raise BadRequest("this face has no crop")
    data = await runtime.face_store.read(face.crop_path)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.delete("/{person_id}/faces/{face_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def remove_face(
    session: Session, runtime: RuntimeDep, principal: PersonsAdmin, person_id: int, face_id: int
) -> Response:
    await service.remove_face(session, runtime, person_id, face_id, actor=principal.actor)
    await session.commit()
    runtime.gallery.invalidate()
    return Response(status_code=204)


@router.get("/{person_id}/subjects", response_model=list[SubjectOut],
            responses={**AUTH_ERRORS, **error_responses(404)})
async def list_subjects(session: Session, _: PersonsReader, person_id: int) -> list[SubjectOut]:
    return [SubjectOut.model_validate(s) for s in await service.list_subjects(session, person_id)]


@router.post("/{person_id}/subjects", response_model=SubjectOut, status_code=201,
             responses={**AUTH_ERRORS, **error_responses(404, 409)})
async def link_subject(
    session: Session, runtime: RuntimeDep, principal: PersonsAdmin, person_id: int,
    body: SubjectLink,
) -> SubjectOut:
    """Link a provider's name for this person (CompreFace `subject`, DeepStack `userid`)."""
    row = await service.link_subject(session, person_id, body, actor=principal.actor)
    await session.commit()
    runtime.gallery.invalidate()
    return SubjectOut.model_validate(row)


@router.delete("/{person_id}/subjects/{subject_id}", status_code=204, response_class=Response,
               responses={**AUTH_ERRORS, **error_responses(404)})
async def unlink_subject(
    session: Session, runtime: RuntimeDep, principal: PersonsAdmin, person_id: int,
    subject_id: int,
) -> Response:
    await service.unlink_subject(session, person_id, subject_id, actor=principal.actor)
    await session.commit()
    runtime.gallery.invalidate()
    return Response(status_code=204)


@router.get("/{person_id}/sightings", response_model=SightingPage,
            responses={**AUTH_ERRORS, **error_responses(400, 404)})
async def get_sightings(
    session: Session, principal: PersonsReader, person_id: int,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SightingPage:
    """Where and when the person was seen (camera, time, detection, frame), newest first."""
    return await sightings(session, person_id, limit=limit, cursor=cursor,
                           camera_scope=principal.camera_scope)


@router.post("/search", response_model=SimilarFaces, openapi_extra=PHOTO_BODY,
             responses={**AUTH_ERRORS, **error_responses(400, 413, 415)})
async def search_faces(
    request: Request, session: Session, runtime: RuntimeDep, principal: PersonsReader,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    since: AwareDatetime | None = None,
) -> SimilarFaces:
    """Find the past face detections most like the one face in a photo (multipart `image`)."""
    photo = await read_photo(request, runtime.settings.max_frame_bytes)
    return await similar_faces(session, runtime, photo, limit=limit, since=since,
                               camera_scope=principal.camera_scope)
