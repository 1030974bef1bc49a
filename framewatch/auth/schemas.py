from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from framewatch.auth.permissions import Role
from framewatch.cameras.schemas import CameraId


def _in_utc(value: datetime) -> datetime:
    # Stored in UTC: a time whose UTC date falls outside years 1-9999 cannot be (422, not 500).
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


Expiry = Annotated[AwareDatetime, AfterValidator(_in_utc)]

CameraScope = Annotated[
    list[CameraId] | None,
    Field(max_length=1000, description="The cameras the key may see and send frames for; "
          "null: every camera."),
]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@ -]+$")
    role: Role
    expires_at: Expiry | None = None
    camera_ids: CameraScope = None


class KeyPatch(BaseModel):
    """Change a key's expiry or camera scope; fields left out are kept."""

    model_config = ConfigDict(extra="forbid")

    expires_at: Expiry | None = None
    camera_ids: CameraScope = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(default=0, ge=0, le=7 * 86_400,
                               description="How long the old secret keeps working.")


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: str
    permissions: list[str]
    camera_ids: list[str] | None
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown this once; only its hash is stored.")


class WsToken(BaseModel):
    token: str = Field(description="Pass as `?token=` to `GET /api/v1/detections/ws`.")
    expires_at: datetime
    permissions: list[str]
    camera_ids: list[str] | None
