"""queue, workers, provider health, roll-ups

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:36:33.223509
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import framewatch.core.database

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "detection_stats_hourly",
        sa.Column(
            "bucket_start", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket_start", "camera_id", "type", "label", name=op.f("pk_detection_stats_hourly")
        ),
    )
    with op.batch_alter_table("detection_stats_hourly", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detection_stats_camera_bucket", ["camera_id", "bucket_start"], unique=False
        )

    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "last_started_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_finished_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("cursor", framewatch.core.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_runs")),
    )
    op.create_table(
        "provider_health",
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column("open_until", framewatch.core.database.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "probe_until", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "last_failure_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_success_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_checked_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "updated_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_provider_health")),
    )
    op.create_table(
        "provider_stats_hourly",
        sa.Column(
            "bucket_start", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False),
        sa.Column("latency_bucket_0", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_1", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_2", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_3", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_4", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_5", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_6", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_7", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_8", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_9", sa.Integer(), nullable=False),
        sa.Column("latency_bucket_10", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket_start", "camera_id", "provider", name=op.f("pk_provider_stats_hourly")
        ),
    )
    with op.batch_alter_table("provider_stats_hourly", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_stats_camera_bucket", ["camera_id", "bucket_start"], unique=False
        )

    op.create_table(
        "queue_workers",
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hostname", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "started_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_seen_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_queue_workers")),
    )
    with op.batch_alter_table("detection_processing_queue", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "dispatched_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "finished_at", framewatch.core.database.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index("ix_queue_finished", ["finished_at"], unique=False)

    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index("ix_detections_created", ["created_at"], unique=False)

    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.create_index("ix_frames_processed", ["processed_at"], unique=False)
        batch_op.add_column(
            sa.Column(
                "image_purged_at",
                framewatch.core.database.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.drop_column("image_purged_at")
        batch_op.drop_index("ix_frames_processed")

    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_created")

    with op.batch_alter_table("detection_processing_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_finished")
        batch_op.drop_column("finished_at")
        batch_op.drop_column("dispatched_at")

    op.drop_table("queue_workers")
    with op.batch_alter_table("provider_stats_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_stats_camera_bucket")

    op.drop_table("provider_stats_hourly")
    op.drop_table("provider_health")
    op.drop_table("job_runs")
    with op.batch_alter_table("detection_stats_hourly", schema=None) as batch_op:
        batch_op.drop_index("ix_detection_stats_camera_bucket")

    op.drop_table("detection_stats_hourly")
