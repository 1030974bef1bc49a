"""persons gallery

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:48:48.097959
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import framewatch.core.database

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gallery_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gallery_version")),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sa.UniqueConstraint("name", name=op.f("uq_persons_name")),
    )
    op.create_table(
        "person_subjects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_person_subjects_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_subjects")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_person_subjects_provider")),
    )
    with op.batch_alter_table("person_subjects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_person_subjects_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "person_faces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.LargeBinary(), nullable=False),
        sa.Column("encoding_model", sa.String(length=100), nullable=False),
        sa.Column(
            "source_frame_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("crop_path", sa.String(length=256), nullable=True),
        sa.Column("box", sa.JSON(), nullable=False),
        sa.Column("quality", sa.Float(), nullable=False),
        sa.Column(
            "created_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_person_faces_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_frame_id"],
            ["frames.id"],
            name=op.f("fk_person_faces_source_frame_id_frames"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_faces")),
    )
    with op.batch_alter_table("person_faces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_faces_person_id"), ["person_id"], unique=False)

    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_events_person_time", ["person_id", "created_at", "id"], unique=False
        )

    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_similarity", sa.Float(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_detections_person_id"))
        batch_op.create_index(
            "ix_detections_person_time", ["person_id", "detected_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_person_time")
        batch_op.create_index(batch_op.f("ix_detections_person_id"), ["person_id"], unique=False)
        batch_op.drop_column("person_similarity")

    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_events_person_time")
        batch_op.drop_column("person_id")

    with op.batch_alter_table("person_faces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_faces_person_id"))

    op.drop_table("person_faces")
    with op.batch_alter_table("person_subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_subjects_person_id"))

    op.drop_table("person_subjects")
    op.drop_table("persons")
    op.drop_table("gallery_version")
