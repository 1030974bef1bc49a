"""queue item request id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 19:59:54.979490
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("detection_processing_queue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("detection_processing_queue", schema=None) as batch_op:
        batch_op.drop_column("request_id")
