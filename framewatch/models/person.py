from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from framewatch.core.database import Base, BigIntId, UTCDateTime, utcnow


class Person(Base):
    """Someone the gallery knows."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PersonFace(Base):
    """One registered face of a person: its encoding (biometric), where it came from, its crop."""

    __tablename__ = "person_faces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("persons.id", ondelete="CASCADE"), index=True
    )
    # Little-endian float32 vector, and the model that produced it.
    encoding: Mapped[bytes] = mapped_column(LargeBinary)
    encoding_model: Mapped[str] = mapped_column(String(100))
    # The frame it was taken from, when registered from a stored frame.
    source_frame_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("frames.id", ondelete="SET NULL")
    )
    # The face's crop under `<data_dir>/faces/`.
    crop_path: Mapped[str | None] = mapped_column(String(256))
    box: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    quality: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PersonSubject(Base):
    """A provider's name for a person (CompreFace `subject`, DeepStack `userid`), linked to the
    gallery's person, so that every provider's identifications land in one gallery."""

    __tablename__ = "person_subjects"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("persons.id", ondelete="CASCADE"), index=True
    )
    # The provider's name; "*" for any provider.
    provider: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))


class GalleryVersion(Base):
    """One row whose number grows with every change to the gallery: processes compare it with
    the version their in-memory index was built from."""

    __tablename__ = "gallery_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)

