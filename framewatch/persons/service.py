"""The gallery: persons, their registered faces (encodings and crops), provider subject links.

Every change bumps the gallery version, so that every process's in-memory index picks it up.
Deleting a person deletes their encodings and crops and unlinks their sightings; with
`erase_sightings` the face encodings of those sightings are erased too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.errors import Conflict, NotFound, ValidationFailed
from framewatch.detector.detector import decode_image
from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.events.service import EventType, Severity, record_event
from framewatch.frames.images import inspect_frame
from framewatch.models import Detection, Frame, Person, PersonFace, PersonSubject
from framewatch.persons.crops import crop_face
from framewatch.persons.index import bump_version
from framewatch.persons.schemas import PersonCreate, PersonPatch, SubjectLink
from framewatch.providers.base import FACE, BoundingBox, FoundObject
from framewatch.runtime import Runtime

MAX_ID = 2**31 - 1


async def list_persons(session: AsyncSession) -> list[tuple[Person, int]]:
    """Every person with their number of registered faces."""
    faces = (select(PersonFace.person_id, func.count().label("n"))
             .group_by(PersonFace.person_id).subquery())
    rows = await session.execute(
        select(Person, func.coalesce(faces.c.n, 0))
        .outerjoin(faces, faces.c.person_id == Person.id).order_by(Person.name)
    )
    return [(person, int(count)) for person, count in rows]


async def get_person(session: AsyncSession, person_id: int) -> Person:
    person = await session.get(Person, person_id) if 1 <= person_id <= MAX_ID else None
    if person is None:
        raise NotFound(f"no person with id {person_id}")
    return person


async def create_person(session: AsyncSession, data: PersonCreate, *, actor: str | None) -> Person:
    await _ensure_name_free(session, data.name)
    person = Person(name=data.name, notes=data.notes)
    session.add(person)
    await session.flush()
    await bump_version(session)
    record_event(session, EventType.PERSON_CREATED, f"person {person.name!r} created",
                 person_id=person.id, actor=actor, payload={"person_id": person.id})
    return person


async def update_person(
    session: AsyncSession, person_id: int, patch: PersonPatch, *, actor: str | None
) -> Person:
    person = await get_person(session, person_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("name") is not None and changes["name"] != person.name:
        await _ensure_name_free(session, changes["name"])
        person.name = changes["name"]
    if "notes" in changes:
        person.notes = changes["notes"]
    await session.flush()
    await bump_version(session)
    record_event(session, EventType.PERSON_UPDATED, f"person {person.id} updated",
                 person_id=person.id, actor=actor, payload={"changed": sorted(changes)})
    return person


async def delete_person(
    session: AsyncSession, runtime: Runtime, person_id: int, *, erase_sightings: bool,
    actor: str | None,
) -> dict[str, int]:
    """Delete the person, their encodings and crops; unlink (and optionally erase the face
    encodings of) their sightings. Returns what was removed."""
    person = await get_person(session, person_id)
    crops = [path for path in await session.scalars(
        select(PersonFace.crop_path).where(PersonFace.person_id == person.id)) if path]
    faces = int(await session.scalar(
        select(func.count()).select_from(PersonFace).where(PersonFace.person_id == person.id))
        or 0)
    values: dict[str, object] = {"person_id": None, "person_similarity": None}
    if erase_sightings:
        values.update(face_encoding=None, encoding_model=None)
    sightings = await session.execute(
        update(Detection).where(Detection.person_id == person.id).values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.delete(person)
    await bump_version(session)
    report = {"faces": faces, "sightings": int(sightings.rowcount)}  # type: ignore[attr-defined]
    record_event(session, EventType.PERSON_DELETED,
                 f"person {person.name!r} deleted with {faces} faces",
                 person_id=person.id, actor=actor, severity=Severity.WARNING,
                 payload={**report, "erase_sightings": erase_sightings})
    await session.flush()
    for path in crops:
        await runtime.face_store.delete(path)
    return report


@dataclass(frozen=True, slots=True)
class NewFace:
    encoding: np.ndarray
    box: BoundingBox
    confidence: float
    crop: bytes


async def add_face_from_photo(
    session: AsyncSession, runtime: Runtime, person_id: int, data: bytes, *, actor: str | None
) -> PersonFace:
    """Register the one face in a photo (422 when there are none, or several)."""
    person = await get_person(session, person_id)
    image = inspect_frame(data, runtime.settings)
    face = await asyncio.to_thread(the_one_face, runtime, image.data)
    return await _store_face(session, runtime, person, face, None, actor)


async def add_face_from_detection(
    session: AsyncSession, runtime: Runtime, person_id: int, detection_id: int,
    *, actor: str | None, camera_scope: frozenset[str] | None = None,
) -> PersonFace:
    """Register a face that was seen: a past face detection (with its frame still stored)."""
    person = await get_person(session, person_id)
    detection = await session.get(Detection, detection_id) if 1 <= detection_id < 2**63 else None
    if detection is None or (camera_scope is not None
                             and detection.camera_id not in camera_scope):
        raise NotFound(f"no detection with id {detection_id}")
    if detection.type != FACE:
        raise ValidationFailed(f"detection {detection_id} is a {detection.type}, not a face")
    frame = await session.get(Frame, detection.frame_id)
    if frame is None or frame.image_purged_at is not None:
        raise ValidationFailed("the detection's frame is no longer stored")
    data = await runtime.frame_store.read(frame.storage_path)
    box = BoundingBox(detection.x_min, detection.y_min, detection.x_max, detection.y_max)
    face = await asyncio.to_thread(_encode_box, runtime, data, box, detection.confidence)
    return await _store_face(session, runtime, person, face, frame.id, actor)


async def remove_face(
    session: AsyncSession, runtime: Runtime, person_id: int, face_id: int, *, actor: str | None
) -> None:
    face = await get_face(session, person_id, face_id)
    path = face.crop_path
    await session.delete(face)
    await bump_version(session)
    record_event(session, EventType.PERSON_FACE_REMOVED, f"face {face_id} of person "
                 f"{person_id} removed", person_id=person_id, actor=actor,
                 payload={"face_id": face_id})
    await session.flush()
    if path:
        await runtime.face_store.delete(path)


async def get_face(session: AsyncSession, person_id: int, face_id: int) -> PersonFace:
    face = await session.get(PersonFace, face_id) if 1 <= face_id <= MAX_ID else None
    if face is None or face.person_id != person_id:
        raise NotFound(f"person {person_id} has no face {face_id}")
    return face


async def list_faces(session: AsyncSession, person_id: int) -> list[PersonFace]:
    await get_person(session, person_id)
    return list(await session.scalars(
        select(PersonFace).where(PersonFace.person_id == person_id).order_by(PersonFace.id)))


async def link_subject(
    session: AsyncSession, person_id: int, link: SubjectLink, *, actor: str | None
) -> PersonSubject:
    """Link a provider's subject to the person (a subject names one person per provider)."""
    await get_person(session, person_id)
    existing = await session.scalar(select(PersonSubject).where(
        PersonSubject.provider == link.provider, PersonSubject.subject == link.subject))
    if existing is not None and existing.person_id != person_id:
        raise Conflict(f"subject {link.subject!r} of {link.provider!r} is linked to person "
                       f"{existing.person_id}")
    row = existing or PersonSubject(person_id=person_id, provider=link.provider,
                                    subject=link.subject)
    session.add(row)
    await session.flush()
    await bump_version(session)
    record_event(session, EventType.PERSON_UPDATED, f"subject {link.subject!r} linked to "
                 f"person {person_id}", person_id=person_id, actor=actor,
                 payload={"provider": link.provider, "subject": link.subject})
    return row


async def unlink_subject(
    session: AsyncSession, person_id: int, subject_id: int, *, actor: str | None
) -> None:
    row = await session.get(PersonSubject, subject_id) if 1 <= subject_id <= MAX_ID else None
    if row is None or row.person_id != person_id:
        raise NotFound(f"person {person_id} has no subject link {subject_id}")
    await session.delete(row)
    await bump_version(session)
    record_event(session, EventType.PERSON_UPDATED, f"subject {row.subject!r} unlinked from "
                 f"person {person_id}", person_id=person_id, actor=actor,
                 payload={"provider": row.provider, "subject": row.subject})


async def list_subjects(session: AsyncSession, person_id: int) -> list[PersonSubject]:
    await get_person(session, person_id)
    return list(await session.scalars(
        select(PersonSubject).where(PersonSubject.person_id == person_id)
        .order_by(PersonSubject.id)))


async def _store_face(
    session: AsyncSession, runtime: Runtime, person: Person, face: NewFace,
    source_frame_id: int | None, actor: str | None,
) -> PersonFace:
    path = await runtime.face_store.save(person.id, face.crop)
    # Quality: how sure the detector was, scaled down for small faces (under 80 px tall).
    quality = round(face.confidence * min(1.0, face.box.height / 80.0), 4)
    row = PersonFace(
        person_id=person.id, encoding=np.asarray(face.encoding, dtype="<f4").tobytes(),
        encoding_model=ENCODING_MODEL, source_frame_id=source_frame_id, crop_path=path,
        box={"x_min": face.box.x_min, "y_min": face.box.y_min, "x_max": face.box.x_max,
             "y_max": face.box.y_max},
        quality=quality,
    )
    session.add(row)
    await session.flush()
    await bump_version(session)
    record_event(session, EventType.PERSON_FACE_ADDED,
                 f"face {row.id} registered for person {person.name!r}", person_id=person.id,
                 actor=actor, payload={"face_id": row.id, "quality": quality,
                                       "source_frame_id": source_frame_id})
    runtime.gallery.invalidate()
    return row


def the_one_face(runtime: Runtime, data: bytes) -> NewFace:
    """The one face in a photo, encoded (422 unless exactly one is found); blocking."""
    pixels = decode_image(data)
    if pixels is None:
        raise ValidationFailed("the photo cannot be decoded")
    detector = runtime.provider_deps.builtin_detector()
    faces: list[FoundObject] = detector.detect(pixels, frozenset({FACE}), 0.5)
    if len(faces) != 1:
        raise ValidationFailed(
            f"the photo must show exactly one face; {len(faces)} were found",
            faces_found=len(faces),
        )
    face = faces[0]
    encoding = face.encoding or detector.encode_faces(pixels, [face.box])[0]
    return NewFace(np.asarray(encoding, dtype=np.float32), face.box, face.confidence,
                   crop_face(pixels, face.box))


def _encode_box(runtime: Runtime, data: bytes, box: BoundingBox, confidence: float) -> NewFace:
    pixels = decode_image(data)
    if pixels is None:
        raise ValidationFailed("the detection's frame cannot be decoded")
    (encoding,) = runtime.provider_deps.builtin_detector().encode_faces(pixels, [box])
    return NewFace(np.asarray(encoding, dtype=np.float32), box, confidence,
                   crop_face(pixels, box))


async def _ensure_name_free(session: AsyncSession, name: str) -> None:
    if await session.scalar(select(Person.id).where(Person.name == name)) is not None:
        raise Conflict(f"a person named {name!r} already exists")
