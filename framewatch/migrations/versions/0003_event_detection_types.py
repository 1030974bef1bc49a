"""event detection types, frame indexes for the live view and camera state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:46:31.705136
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detection_types", sa.String(length=300), nullable=True))
    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.drop_index("ix_frames_camera_received")
        batch_op.create_index("ix_frames_camera_received", ["camera_id", "received_at", "id"])
        batch_op.create_index("ix_frames_received", ["received_at"])


def downgrade() -> None:
    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.drop_index("ix_frames_received")
        batch_op.drop_index("ix_frames_camera_received")
        batch_op.create_index("ix_frames_camera_received", ["camera_id", "received_at"])
    with op.batch_alter_table("detection_event_logs", schema=None) as batch_op:
        batch_op.drop_column("detection_types")
