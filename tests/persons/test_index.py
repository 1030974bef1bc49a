"""The in-memory gallery: `FaceMatrix` against brute force on random vectors, `GalleryIndex` on a
real database (models kept apart, the threshold's boundary, subject links, refreshing on the
version), and two API instances on one database: what one registers or deletes, the other
matches or stops matching at its next version check (every `gallery_check_seconds`), without a
restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import insert

from framewatch.app import create_app
from framewatch.detector.encoder import ENCODING_MODEL
from framewatch.models import Detection, Person, PersonFace, PersonSubject
from framewatch.persons.index import LOAD_BATCH, FaceMatrix, GalleryIndex, bump_version
from tests.api.helpers import add_camera, rows_of
from tests.api_fixtures import Api, make_settings, start_api
from tests.persons.helpers import PERSONS, register, send_faces, the_face

DIM = 128


def dlib_like(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Random float32 vectors shaped like dlib encodings: norms around 1.3-1.6."""
    vectors = rng.normal(0.0, 1.0, (rows, DIM)).astype(np.float32)
    norms = rng.uniform(1.3, 1.6, (rows, 1)).astype(np.float32)
    scaled: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * norms
    return scaled


def test_the_nearest_face_is_the_one_brute_force_finds() -> None:
    rng = np.random.default_rng(7)
    gallery = dlib_like(rng, 2000)
    face_ids = list(range(1000, 3000))
    person_ids = [i // 4 for i in face_ids]  # four faces per person
    matrix = FaceMatrix(face_ids, person_ids, gallery)
    assert len(matrix) == 2000
    # Queries: near copies of gallery faces, and unrelated vectors.
    queries = np.vstack([gallery[rng.integers(0, 2000, 25)] + rng.normal(0, 0.02, (25, DIM)),
                         dlib_like(rng, 25)]).astype(np.float32)
    for query in queries:
        exact = np.linalg.norm(gallery.astype(np.float64) - query.astype(np.float64), axis=1)
        order = np.argsort(exact, kind="stable")
        ((face_id, person_id, found),) = matrix.nearest(query, 1)
        assert face_id == face_ids[order[0]] and person_id == person_ids[order[0]]
        assert found == pytest.approx(exact[order[0]], abs=1e-4)
        top = matrix.nearest(query, 7)
        assert [f for f, _, _ in top] == [face_ids[i] for i in order[:7]]
        distances = [d for _, _, d in top]
        assert distances == sorted(distances)
        assert distances == pytest.approx(exact[order[:7]].tolist(), abs=1e-4)


def test_k_is_capped_by_the_gallery_and_an_empty_gallery_finds_nothing() -> None:
    vectors = np.array([[0.0] * DIM, [3.0] + [0.0] * (DIM - 1), [1.0] + [0.0] * (DIM - 1)],
                       dtype=np.float32)
    matrix = FaceMatrix([10, 20, 30], [1, 2, 3], vectors)
    query = np.array([0.9] + [0.0] * (DIM - 1), dtype=np.float32)
    assert [(f, p, round(d, 5)) for f, p, d in matrix.nearest(query, 10)] == [
        (30, 3, 0.1), (10, 1, 0.9), (20, 2, 2.1)]
    empty = FaceMatrix([], [], np.zeros((0, DIM), dtype=np.float32))
    assert len(empty) == 0 and empty.nearest(query, 3) == []


@asynccontextmanager
async def index_on(api: Api, threshold: float, check_seconds: float = 0.0
                   ) -> AsyncIterator[GalleryIndex]:
    yield GalleryIndex(api.runtime.session_factory, threshold, check_seconds)


async def add_faces(api: Api, name: str, model: str, *vectors: np.ndarray) -> int:
    """A person with these faces, written straight to the database, and the version bumped."""
    async with api.runtime.session_factory() as session:
        person = Person(name=name)
        session.add(person)
        await session.flush()
        for vector in vectors:
            session.add(PersonFace(person_id=person.id, encoding_model=model, quality=1.0,
                                   encoding=np.asarray(vector, dtype="<f4").tobytes(), box={}))
        await bump_version(session)
        await session.commit()
        return person.id


def axis(value: float, index: int = 0) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = value
    return vector


async def test_models_are_kept_apart_and_the_threshold_is_inclusive(api_any_db: Api) -> None:
    api = api_any_db
    ann = await add_faces(api, "Ann", "model-a", axis(0.0))
    ben = await add_faces(api, "Ben", "model-b", axis(0.1))
    async with index_on(api, threshold=0.5) as index:
        # Exactly 0.5 away (exact in float32) is a match; a hair further is not.
        at = await index.match(axis(0.5), "model-a")
        assert at is not None and (at.person_id, at.name, at.distance) == (ann, "Ann", 0.5)
        assert at.similarity == 0.5
        assert await index.match(axis(0.50001), "model-a") is None
        # Ben is 0.4 away from that query, but his face is of another model.
        near_ben = await index.match(axis(0.5), "model-b")
        assert near_ben is not None and near_ben.person_id == ben
        assert near_ben.distance == pytest.approx(0.4, abs=1e-6)
        assert await index.match(axis(0.0), "model-c") is None
        # Within the threshold of both persons' faces of one model: the nearer wins.
        cal = await add_faces(api, "Cal", "model-a", axis(0.3, 1))
        found = await index.match(axis(0.2, 1), "model-a")
        assert found is not None and (found.person_id, found.name) == (cal, "Cal")
        assert found.distance == pytest.approx(0.1, abs=1e-6)


async def test_subjects_of_a_provider_take_precedence_over_any_provider(api_any_db: Api
                                                                        ) -> None:
    api = api_any_db
    ann = await add_faces(api, "Ann", "model-a")
    ben = await add_faces(api, "Ben", "model-a")
    async with api.runtime.session_factory() as session:
        session.add_all([PersonSubject(person_id=ann, provider="cf", subject="alice"),
                         PersonSubject(person_id=ben, provider="*", subject="alice"),
                         PersonSubject(person_id=ben, provider="*", subject="bob")])
        await bump_version(session)
        await session.commit()
    async with index_on(api, threshold=0.45) as index:
        assert await index.subject("cf", "alice") == (ann, "Ann")
        assert await index.subject("ds", "alice") == (ben, "Ben")
        assert await index.subject("cf", "bob") == (ben, "Ben")
        assert await index.subject("cf", "carol") is None
        assert await index.subject("cf", "Alice") is None  # subjects are exact


async def test_the_index_rereads_the_gallery_only_when_its_version_moved(api: Api) -> None:
    index = GalleryIndex(api.runtime.session_factory, 0.45, check_seconds=3600)
    assert await index.match(axis(1.0), "model-a") is None
    first = await index.snapshot()
    ann = await add_faces(api, "Ann", "model-a", axis(1.0))
    # Within check_seconds the old copy is used, without reading the database...
    assert await index.match(axis(1.0), "model-a") is None
    assert await index.snapshot() is first
    # ...until this process says it changed the gallery (or check_seconds pass).
    index.invalidate()
    found = await index.match(axis(1.0), "model-a")
    assert found is not None and found.person_id == ann
    second = await index.snapshot()
    assert second.version == first.version + 1 and index.known_names() == {ann: "Ann"}
    # A check that finds the same version keeps the same copy.
    index.invalidate()
    assert await index.snapshot() is second


async def test_a_gallery_larger_than_one_read_batch_is_loaded_whole(api_any_db: Api) -> None:
    """The gallery is read LOAD_BATCH faces at a time: every face, of each model, in order."""
    api = api_any_db
    rng = np.random.default_rng(11)
    count = 2 * LOAD_BATCH + 321
    vectors = dlib_like(rng, count)
    models = ["model-a" if i % 3 else "model-b" for i in range(count)]
    async with api.runtime.session_factory() as session:
        await session.execute(insert(Person), [{"id": p, "name": f"p{p}"} for p in (1, 2)])
        await session.execute(insert(PersonFace), [
            {"id": 10_000 + i, "person_id": 1 + i % 2, "encoding_model": models[i],
             "quality": 1.0, "encoding": vectors[i].astype("<f4").tobytes(), "box": {}}
            for i in range(count)])
        await bump_version(session)
        await session.commit()
    index = GalleryIndex(api.runtime.session_factory, 0.45, check_seconds=3600)
    snapshot = await index.snapshot()
    for model in ("model-a", "model-b"):
        rows = [i for i in range(count) if models[i] == model]
        matrix = snapshot.matrices[model]
        assert matrix.face_ids.tolist() == [10_000 + i for i in rows]
        assert matrix.person_ids.tolist() == [1 + i % 2 for i in rows]
        assert np.array_equal(matrix.vectors, vectors[rows])
    # A stored face, slightly moved, is found again: its own person, within the threshold.
    probe = count - 1
    found = await index.match(vectors[probe] + np.float32(0.01), models[probe])
    assert found is not None and (found.face_id, found.person_id) == (10_000 + probe,
                                                                      1 + probe % 2)


@asynccontextmanager
async def two_instances(tmp_path: Path, database_url: str, check_seconds: float
                        ) -> AsyncIterator[tuple[Api, Api]]:
    """Two apps (two runtimes, two engines, two gallery copies) on one database; the second
    uses the keys the first created."""
    first = start_api(make_settings(tmp_path / "a", database_url,
                                    gallery_check_seconds=check_seconds))
    one = await anext(first)
    try:
        settings = make_settings(tmp_path / "b", database_url,
                                 gallery_check_seconds=check_seconds)
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield one, Api(app=app, client=client, settings=settings, keys=one.keys)
    finally:
        await anext(first, None)


async def until_matched(api: Api, encoding: np.ndarray, want: bool, within: float) -> None:
    """Wait until `api`'s gallery matches (or stops matching) `encoding`."""
    started = time.monotonic()
    while (await api.runtime.gallery.match(encoding, ENCODING_MODEL) is not None) != want:
        assert time.monotonic() - started < within, f"not {want} within {within} s"
        await asyncio.sleep(0.02)


CHECK_SECONDS = 0.5
PICKED_UP_WITHIN = 30.0


async def test_what_one_instance_changes_the_other_matches_within_the_check_interval(
    tmp_path: Path, any_database_url: str,
) -> None:
    async with two_instances(tmp_path, any_database_url, CHECK_SECONDS) as (one, other):
        await add_camera(one)
        # The other instance sees the man before he is registered: unknown, and its copy of
        # the (empty) gallery is loaded.
        before = the_face(await send_faces(other, "player_left_2.jpg"))
        assert before["person_id"] is None
        (row,) = await rows_of(other, Detection, Detection.id == before["id"])
        encoding = np.frombuffer(row.face_encoding or b"", dtype="<f4")

        person_id, _ = await register(one, "Lefty", "player_left_1.jpg")
        # Typically within CHECK_SECONDS; the bound is generous for a loaded machine.
        await until_matched(other, encoding, True, within=PICKED_UP_WITHIN)
        after = the_face(await send_faces(other, "player_left_2.jpg", tag="again"))
        assert (after["person_id"], after["person"]["name"]) == (person_id, "Lefty")

        deleted = await one.client.delete(f"{PERSONS}/{person_id}", headers=one.auth("admin"))
        assert deleted.status_code == 204
        await until_matched(other, encoding, False, within=PICKED_UP_WITHIN)
        gone = the_face(await send_faces(other, "player_left_2.jpg", tag="gone"))
        assert (gone["person_id"], gone["person"]) == (None, None)
