from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

CameraId = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="A short slug: lower-case letters, digits, `-` and `_`, at most 64.",
        examples=["front-door"],
    ),
]


class CameraCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CameraId
    name: str = Field(min_length=1, max_length=200)
    location: str | None = Field(default=None, max_length=200)
    enabled: bool = True
    provider_id: int | None = Field(
        default=None, description="The camera's own provider; null uses the default provider."
    )


class CameraPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    location: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None
    provider_id: int | None = None


class CameraOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    location: str | None
    enabled: bool
    provider_id: int | None
    created_at: datetime
    updated_at: datetime
