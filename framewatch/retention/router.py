from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from framewatch.auth.dependencies import RetentionAdmin
from framewatch.core.dependencies import RuntimeDep, Session
from framewatch.core.openapi import AUTH_ERRORS
from framewatch.events.service import EventType, record_event
from framewatch.retention.policy import RetentionPolicy, retention_policy
from framewatch.retention.service import cleanup_old_data

router = APIRouter(prefix="/api/v1/retention", tags=["retention"])


class RetentionRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=True, description="Count what would go; remove nothing.")


class RetentionReport(BaseModel):
    dry_run: bool
    detections: int
    face_encodings: int
    frame_images: int
    frames: int
    events: int


@router.get("", response_model=RetentionPolicy, responses=AUTH_ERRORS)
async def get_policy(session: Session, runtime: RuntimeDep, _: RetentionAdmin) -> RetentionPolicy:
    """How long each kind of data is kept, globally and per camera (overrides are set on the
    cameras: `PATCH /api/v1/cameras/{id}` with `retention_*_days`)."""
    return await retention_policy(session, runtime.settings)


@router.post("/run", response_model=RetentionReport, responses=AUTH_ERRORS)
async def run_retention(
    session: Session, runtime: RuntimeDep, principal: RetentionAdmin,
    body: RetentionRun | None = None,
) -> RetentionReport:
    """Apply the retention policy now — or, with `dry_run` (the default), report what it would
    remove."""
    dry_run = body.dry_run if body else True
    report = await cleanup_old_data(runtime, dry_run=dry_run)
    record_event(session, EventType.RETENTION_CLEANUP,
                 f"retention {'dry run' if dry_run else 'run'} requested",
                 actor=principal.actor, payload={**report, "dry_run": dry_run})
    await session.commit()
    return RetentionReport(dry_run=dry_run, **report)
