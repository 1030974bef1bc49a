"""The gallery in memory: every registered face encoding of one model as a float32 matrix, so
that finding the nearest known face is one matrix product, however large the gallery.

Euclidean distance, as dlib intends for its encodings: |q - g|² = |q|² + |g|² - 2 q·g, with the
gallery's squared norms computed once. Each process keeps its own copy and compares a version
number in the database (`gallery_version`, bumped by every change to the gallery) at most every
`FRAMEWATCH_GALLERY_CHECK_SECONDS`; a change anywhere reaches every process within that time.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from framewatch.models import GalleryVersion, Person, PersonFace, PersonSubject

Matrix = npt.NDArray[np.float32]
ANY_PROVIDER = "*"
LOAD_BATCH = 2000  # faces read per round trip when loading the gallery


@dataclass(frozen=True, slots=True)
class Match:
    person_id: int
    name: str
    distance: float
    face_id: int

    @property
    def similarity(self) -> float:
        """1 − distance, clamped to 0..1 (dlib distances of one person are ~0.2–0.45)."""
        return round(max(0.0, min(1.0, 1.0 - self.distance)), 4)


class FaceMatrix:
    """The faces of one encoding model."""

    def __init__(self, face_ids: list[int], person_ids: list[int], vectors: Matrix) -> None:
        self.face_ids = np.asarray(face_ids, dtype=np.int64)
        self.person_ids = np.asarray(person_ids, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.norms = np.einsum("ij,ij->i", self.vectors, self.vectors)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def nearest(self, query: Matrix, k: int = 1) -> list[tuple[int, int, float]]:
        """The k nearest faces as (face id, person id, distance), nearest first."""
        if not len(self):
            return []
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        # einsum, not `vectors @ q`: einsum runs its own SIMD loop on one thread, while
        # OpenBLAS's threaded sgemv has its threads wait on each other when the cores are busy
        # (as they are while the detector runs): there it cost 3.5-4 times the CPU at the
        # median and up to 7 times at p99, for a ~1.6x gain on a quiet host (docs/persons.md,
        # "Matching speed").
        scores = np.einsum("ij,j->i", self.vectors, q)
        scores *= -2.0
        scores += self.norms  # |g|² - 2 q·g: the squared distance less |q|², same order
        k = min(k, len(self))
        if k == 1:
            order = np.array([int(np.argmin(scores))])
        else:
            part = np.argpartition(scores, k - 1)[:k]
            order = part[np.argsort(scores[part])]
        q_squared = float(q @ q)
        return [(int(self.face_ids[i]), int(self.person_ids[i]),
                 float(np.sqrt(max(float(scores[i]) + q_squared, 0.0)))) for i in order]


@dataclass
class GallerySnapshot:
    version: int
    matrices: dict[str, FaceMatrix]
    names: dict[int, str]
    # (provider or "*", subject) → person id
    subjects: dict[tuple[str, str], int]


class GalleryIndex:
    """This process's copy of the gallery, refreshed when the version in the database moves."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], threshold: float,
                 check_seconds: float) -> None:
        self._sessions = sessions
        self.threshold = threshold
        self._check_seconds = check_seconds
        self._snapshot: GallerySnapshot | None = None
        # Minus infinity, not 0: time.monotonic() counts from boot, so on a host up for less
        # than check_seconds a check "at 0" would still look fresh.
        self._checked_at = -math.inf
        self._lock = asyncio.Lock()

    async def snapshot(self) -> GallerySnapshot:
        now = time.monotonic()
        if self._snapshot is not None and now - self._checked_at < self._check_seconds:
            return self._snapshot
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._checked_at < \
                    self._check_seconds:
                return self._snapshot
            async with self._sessions() as session:
                version = await current_version(session)
                if self._snapshot is None or self._snapshot.version != version:
                    self._snapshot = await load_snapshot(session, version)
            self._checked_at = time.monotonic()
            return self._snapshot

    def known_names(self) -> dict[int, str]:
        """The persons' names as of the last refresh (no database access)."""
        return self._snapshot.names if self._snapshot is not None else {}

    def invalidate(self) -> None:
        """Re-read the version on the next use (this process changed the gallery)."""
        self._checked_at = -math.inf

    async def match(self, encoding: Matrix, model: str) -> Match | None:
        """The nearest registered face of `model` within the threshold; None: unknown."""
        snapshot = await self.snapshot()
        matrix = snapshot.matrices.get(model)
        if matrix is None:
            return None
        nearest = matrix.nearest(encoding, 1)
        if not nearest or nearest[0][2] > self.threshold:
            return None
        face_id, person_id, distance = nearest[0]
        return Match(person_id, snapshot.names.get(person_id, ""), distance, face_id)

    async def subject(self, provider: str, subject: str) -> tuple[int, str] | None:
        """The person a provider's subject is linked to, if any."""
        snapshot = await self.snapshot()
        person = snapshot.subjects.get((provider, subject))
        if person is None:
            person = snapshot.subjects.get((ANY_PROVIDER, subject))
        return (person, snapshot.names.get(person, "")) if person is not None else None


async def current_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(GalleryVersion.version).where(
        GalleryVersion.id == 1)) or 0)


async def bump_version(session: AsyncSession) -> None:
    """Mark the gallery changed (in the caller's transaction)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(GalleryVersion).values(id=1, version=0).on_conflict_do_nothing(index_elements=["id"])
    )
    await session.execute(
        update(GalleryVersion).where(GalleryVersion.id == 1)
        .values(version=GalleryVersion.version + 1)
    )


async def load_snapshot(session: AsyncSession, version: int) -> GallerySnapshot:
    rows: dict[str, tuple[list[int], list[int], list[bytes]]] = {}
    # Streamed in batches: between them the event loop serves other requests, where one
    # fetch of 100,000 faces held it for about a second.
    result = await session.stream(
        select(PersonFace.id, PersonFace.person_id, PersonFace.encoding_model,
               PersonFace.encoding).order_by(PersonFace.id)
        .execution_options(yield_per=LOAD_BATCH)
    )
    async for batch in result.partitions():
        for face_id, person_id, model, encoding in batch:
            ids, persons, vectors = rows.setdefault(model, ([], [], []))
            ids.append(face_id)
            persons.append(person_id)
            vectors.append(encoding)
    matrices = {}
    for model, (ids, persons, vectors) in rows.items():
        matrix = np.frombuffer(b"".join(vectors), dtype="<f4").reshape(len(ids), -1)
        matrices[model] = FaceMatrix(ids, persons, matrix)
    names = {person_id: name for person_id, name in await session.execute(
        select(Person.id, Person.name))}
    subjects = {
        (provider, subject): person_id for provider, subject, person_id in await session.execute(
            select(PersonSubject.provider, PersonSubject.subject, PersonSubject.person_id))
    }
    return GallerySnapshot(version, matrices, names, subjects)
