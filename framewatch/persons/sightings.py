"""Re-identification: where a person was seen, and which past faces look like a photo's."""

from __future__ import annotations

import asyncio
from datetime import datetime

import numpy as np
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.pagination import decode_cursor, encode_cursor
from framewatch.detections.schemas import BBox
from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.frames.images import inspect_frame
from framewatch.models import Detection
from framewatch.persons.index import FaceMatrix
from framewatch.persons.schemas import Sighting, SightingPage, SimilarFace, SimilarFaces
from framewatch.persons.service import get_person, the_one_face
from framewatch.runtime import Runtime

SEARCH_BATCH = 5000


def _bbox(d: Detection) -> BBox:
    return BBox(x_min=d.x_min, y_min=d.y_min, x_max=d.x_max, y_max=d.y_max)


async def sightings(
    session: AsyncSession, person_id: int, *, limit: int, cursor: str | None,
    camera_scope: frozenset[str] | None,
) -> SightingPage:
    """The person's identified detections, newest first (keyset on detected_at, id)."""
    await get_person(session, person_id)
    query = select(Detection).where(Detection.person_id == person_id)
    if camera_scope is not None:
        query = query.where(Detection.camera_id.in_(sorted(camera_scope)))
    if cursor:
        moment, last = decode_cursor(cursor)
        query = query.where(tuple_(Detection.detected_at, Detection.id) < tuple_(moment, last))
    rows = list(await session.scalars(
        query.order_by(Detection.detected_at.desc(), Detection.id.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].detected_at, rows[-1].id)
    return SightingPage(items=[
        Sighting(detection_id=d.id, camera_id=d.camera_id, frame_id=d.frame_id,
                 detected_at=d.detected_at, similarity=d.person_similarity, bbox=_bbox(d))
        for d in rows], next_cursor=next_cursor)


async def similar_faces(
    session: AsyncSession, runtime: Runtime, photo: bytes, *, limit: int,
    since: datetime | None, camera_scope: frozenset[str] | None,
) -> SimilarFaces:
    """The past face detections nearest to the one face in `photo`, nearest first.

    Scans the face encodings stored with detections (of the built-in model), newest first, in
    batches, keeping the best `limit`: bounded memory whatever the history's size."""
    image = inspect_frame(photo, runtime.settings)
    face = await asyncio.to_thread(the_one_face, runtime, image.data)
    best: list[tuple[float, int]] = []
    searched, last_id = 0, None
    while True:
        query = (select(Detection.id, Detection.face_encoding)
                 .where(Detection.encoding_model == ENCODING_MODEL,
                        Detection.face_encoding.is_not(None))
                 .order_by(Detection.id.desc()).limit(SEARCH_BATCH))
        if since is not None:
            query = query.where(Detection.detected_at >= since)
        if camera_scope is not None:
            query = query.where(Detection.camera_id.in_(sorted(camera_scope)))
        if last_id is not None:
            query = query.where(Detection.id < last_id)
        rows = (await session.execute(query)).all()
        if not rows:
            break
        ids = [row[0] for row in rows]
        vectors = np.frombuffer(b"".join(row[1] or b"" for row in rows), dtype="<f4").reshape(
            len(rows), -1)
        matrix = FaceMatrix(ids, [0] * len(ids), vectors)
        best.extend((distance, face_id)
                    for face_id, _, distance in matrix.nearest(face.encoding, limit))
        best = sorted(best)[:limit]
        searched += len(rows)
        last_id = ids[-1]
    found = {d.id: d for d in await session.scalars(
        select(Detection).where(Detection.id.in_([i for _, i in best])))}
    return SimilarFaces(searched=searched, items=[
        SimilarFace(detection_id=i, camera_id=found[i].camera_id, frame_id=found[i].frame_id,
                    detected_at=found[i].detected_at, distance=round(distance, 4),
                    similarity=round(max(0.0, 1.0 - distance), 4),
                    person_id=found[i].person_id, bbox=_bbox(found[i]))
        for distance, i in best if i in found])
