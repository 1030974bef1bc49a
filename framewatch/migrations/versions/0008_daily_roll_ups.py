"""daily roll-ups

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 00:42:54.136098

Daily statistics roll-ups (per UTC day and camera) and the hourly detection series over every
camera, filled at once from the hourly roll-ups already stored, so that statistics read from
them right after the upgrade. The roll-up job keeps them up to date from then on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import framewatch.core.database

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROVIDER_FIGURES = ("frames", "errors", "dead_letters", "latency_ms_sum",
                    *(f"latency_bucket_{i}" for i in range(11)))


def upgrade() -> None:
    op.create_table(
        "detection_series_hourly",
        sa.Column(
            "bucket_start", framewatch.core.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_start", "type", name=op.f("pk_detection_series_hourly")),
    )
    op.create_table(
        "detection_stats_daily",
        sa.Column("day", framewatch.core.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "camera_id", "type", "label", name=op.f("pk_detection_stats_daily")
        ),
    )
    with op.batch_alter_table("detection_stats_daily", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detection_stats_daily_camera_day", ["camera_id", "day"], unique=False
        )

    op.create_table(
        "provider_stats_daily",
        sa.Column("day", framewatch.core.database.UTCDateTime(timezone=True), nullable=False),
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
            "day", "camera_id", "provider", name=op.f("pk_provider_stats_daily")
        ),
    )
    with op.batch_alter_table("provider_stats_daily", schema=None) as batch_op:
        batch_op.create_index(
            "ix_provider_stats_daily_camera_day", ["camera_id", "day"], unique=False
        )

    backfill()


def backfill() -> None:
    """Sum the stored hourly roll-ups into the new tables, in SQL (fixed here, not imported
    from the app, so that this revision keeps doing what it did)."""
    if op.get_bind().dialect.name == "postgresql":
        # The UTC day of a timestamptz, whatever the session's time zone.
        day = "date_trunc('day', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        # SQLite keeps timestamps as text in SQLAlchemy's format, microseconds included; the
        # day must be written the same way, or comparing it as text would go wrong.
        day = "strftime('%Y-%m-%d 00:00:00.000000', bucket_start)"
    op.execute(
        "INSERT INTO detection_series_hourly (bucket_start, type, detections) "
        "SELECT bucket_start, type, sum(detections) FROM detection_stats_hourly "
        "GROUP BY bucket_start, type"
    )
    op.execute(
        "INSERT INTO detection_stats_daily "
        "(day, camera_id, type, label, detections, confidence_sum) "
        f"SELECT {day}, camera_id, type, label, sum(detections), sum(confidence_sum) "
        f"FROM detection_stats_hourly GROUP BY {day}, camera_id, type, label"
    )
    figures = ", ".join(PROVIDER_FIGURES)
    sums = ", ".join(f"sum({column})" for column in PROVIDER_FIGURES)
    op.execute(
        f"INSERT INTO provider_stats_daily (day, camera_id, provider, {figures}) "
        f"SELECT {day}, camera_id, provider, {sums} FROM provider_stats_hourly "
        f"GROUP BY {day}, camera_id, provider"
    )


def downgrade() -> None:
    with op.batch_alter_table("provider_stats_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_stats_daily_camera_day")

    op.drop_table("provider_stats_daily")
    with op.batch_alter_table("detection_stats_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_detection_stats_daily_camera_day")

    op.drop_table("detection_stats_daily")
    op.drop_table("detection_series_hourly")
