"""API shapes of provider configurations. API keys are write-only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from framewatch.providers.base import STANDARD_TYPES

ProviderKind = Literal["builtin", "deepstack", "compreface", "http"]
DetectionTypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9 _-]{0,63}$")]
ProviderName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[\w.@ -]+$")]


def check_base_url(url: str | None) -> str | None:
    if url is None:
        return None
    if "\x00" in url:  # PostgreSQL cannot store it, and no URL has one
        raise ValueError("base_url must not contain NUL characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    return url.rstrip("/")


class ProviderSettingsIn(BaseModel):
    """The settings of a provider, as written by a client."""

    model_config = ConfigDict(extra="forbid")

    kind: ProviderKind
    base_url: str | None = Field(default=None, max_length=2048)
    api_key: SecretStr | None = Field(default=None, max_length=4096)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=2, ge=0, le=10)
    detection_types: list[DetectionTypeName] = Field(
        default_factory=lambda: sorted(STANDARD_TYPES), min_length=1, max_length=100
    )
    min_confidence: float = Field(default=0.4, ge=0, le=1)
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict, max_length=50)

    _check_url = field_validator("base_url")(classmethod(lambda cls, v: check_base_url(v)))

    @model_validator(mode="after")
    def _remote_needs_url(self) -> ProviderSettingsIn:
        if self.kind != "builtin" and not self.base_url:
            raise ValueError(f"a {self.kind} provider needs a base_url")
        return self


class ProviderCreate(ProviderSettingsIn):
    name: ProviderName
    is_default: bool = False


class DefaultProviderPut(ProviderSettingsIn):
    """The default provider's settings; its name is kept (or `default` for a new one)."""

    name: ProviderName | None = None


class ProviderPatch(BaseModel):
    """Fields to change; `api_key: null` removes the stored key, leaving it out keeps it."""

    model_config = ConfigDict(extra="forbid")

    name: ProviderName | None = None
    base_url: str | None = Field(default=None, max_length=2048)
    api_key: SecretStr | None = Field(default=None, max_length=4096)
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    detection_types: list[DetectionTypeName] | None = Field(
        default=None, min_length=1, max_length=100
    )
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    enabled: bool | None = None
    is_default: bool | None = None
    options: dict[str, Any] | None = Field(default=None, max_length=50)

    _check_url = field_validator("base_url")(classmethod(lambda cls, v: check_base_url(v)))


class ProviderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    base_url: str | None
    has_api_key: bool
    api_key_hint: str | None = Field(description="A masked hint such as `••••abcd`.")
    timeout_seconds: float
    max_retries: int
    detection_types: list[str]
    min_confidence: float
    enabled: bool
    is_default: bool
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ProviderTestRequest(BaseModel):
    """Test a stored provider (`provider_id`) or an unsaved configuration (`provider`)."""

    model_config = ConfigDict(extra="forbid")

    provider_id: int | None = None
    provider: ProviderSettingsIn | None = None
    image_base64: str | None = Field(
        default=None,
        max_length=16 * 1024 * 1024,
        description="A frame to test with; default: a bundled photograph of a person.",
    )
    detection_types: list[DetectionTypeName] | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _one_target(self) -> ProviderTestRequest:
        if (self.provider_id is None) == (self.provider is None):
            raise ValueError("give exactly one of provider_id and provider")
        return self


class TestedObject(BaseModel):
    type: str
    label: str
    confidence: float
    bbox: dict[str, float]
    subject: str | None = None


class ProviderTestReport(BaseModel):
    success: bool
    provider: str
    kind: str
    latency_ms: float
    attempts: int
    capabilities: dict[str, Any]
    model: str | None = None
    found: list[TestedObject] = Field(default_factory=list)
    error: dict[str, Any] | None = None
