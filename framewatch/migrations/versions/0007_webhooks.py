"""webhooks

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:08:42.962784
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import framewatch.core.database

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("camera_ids", sa.JSON(), nullable=True),
        sa.Column("detection_types", sa.JSON(), nullable=True),
        sa.Column("person_ids", sa.JSON(), nullable=True),
        sa.Column("min_confidence", sa.Float(), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
        sa.UniqueConstraint("name", name=op.f("uq_webhook_subscriptions_name")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column(
            "lease_expires_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response_ms", sa.Float(), nullable=True),
        sa.Column("attempt_log", sa.JSON(), nullable=False),
        sa.Column(
            "delivered_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "finished_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "created_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_finished", ["finished_at"], unique=False)
        batch_op.create_index(
            "ix_webhook_deliveries_status_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_subscription", ["subscription_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_subscription")
        batch_op.drop_index("ix_webhook_deliveries_status_due")
        batch_op.drop_index("ix_webhook_deliveries_finished")

    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
