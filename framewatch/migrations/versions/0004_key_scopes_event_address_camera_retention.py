"""key scopes and rotation, event address, camera retention

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:29:14.409675
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import framewatch.core.database

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("camera_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("previous_key_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "previous_expires_at",
                framewatch.core.database.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "rotated_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_api_keys_previous_key_hash"), ["previous_key_hash"]
        )

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_detections_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retention_frames_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retention_face_encodings_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("retention_events_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.drop_column("request_id")
        batch_op.drop_column("address")

    with op.batch_alter_table("cameras", schema=None) as batch_op:
        batch_op.drop_column("retention_events_days")
        batch_op.drop_column("retention_face_encodings_days")
        batch_op.drop_column("retention_frames_days")
        batch_op.drop_column("retention_detections_days")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_api_keys_previous_key_hash"), type_="unique")
        batch_op.drop_column("rotated_at")
        batch_op.drop_column("previous_expires_at")
        batch_op.drop_column("previous_key_hash")
        batch_op.drop_column("camera_ids")
