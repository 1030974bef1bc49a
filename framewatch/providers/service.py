"""Provider configurations: stored, validated, chosen per camera, and turned into providers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings
from framewatch.core.errors import Conflict, NotFound, ProviderUnavailable, ValidationFailed
from framewatch.core.secrets import SecretBox, mask
from framewatch.events.service import EventType, Severity, record_event
from framewatch.models import Camera, DetectionProviderConfig
from framewatch.providers.base import ProviderSpec
from framewatch.providers.compreface import CompreFaceOptions
from framewatch.providers.deepstack import DeepStackOptions
from framewatch.providers.generic_http import HttpMapping
from framewatch.providers.schemas import (
    DefaultProviderPut,
    ProviderCreate,
    ProviderPatch,
    ProviderSettingsIn,
)
from framewatch.providers.urls import ForbiddenProviderAddress, ProviderAddressPolicy

BUILTIN_NAME = "builtin"

class CommonOptions(BaseModel):
    """Options every provider kind takes, beside its own."""

    model_config = ConfigDict(extra="allow")

    retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)


# Each kind's own options, checked before a configuration is stored.
_OPTION_MODELS: dict[str, type[BaseModel]] = {
    "http": HttpMapping,
    "deepstack": DeepStackOptions,
    "compreface": CompreFaceOptions,
}
_COMMON_KEYS = frozenset(CommonOptions.model_fields)


def validate_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        CommonOptions.model_validate(options)
        model = _OPTION_MODELS.get(kind)
        if model is not None:
            model.model_validate({k: v for k, v in options.items() if k not in _COMMON_KEYS})
    except ValidationError as exc:
        raise ValidationFailed(
            f"invalid options for a {kind} provider",
            fields=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from None
    return options


def check_provider_url(policy: ProviderAddressPolicy | None, url: str | None) -> None:
    """Refuse (422) a base URL where providers may not be (see providers/urls.py)."""
    if policy is None or url is None:
        return
    try:
        policy.check_url(url)
    except ForbiddenProviderAddress as exc:
        raise ValidationFailed(f"base_url refused: {exc}", field="base_url") from None


def spec_from_settings(
    name: str, data: ProviderSettingsIn, settings: Settings | None = None
) -> ProviderSpec:
    """A spec for an unsaved configuration (the test endpoint's inline providers)."""
    options = validate_options(data.kind, data.options)
    common = CommonOptions.model_validate(options)
    return ProviderSpec(
        name=name,
        kind=data.kind,
        base_url=data.base_url,
        api_key=data.api_key.get_secret_value() if data.api_key else None,
        timeout_seconds=data.timeout_seconds,
        connect_timeout_seconds=common.connect_timeout_seconds,
        max_retries=data.max_retries,
        retry_backoff_seconds=common.retry_backoff_seconds,
        detection_types=frozenset(data.detection_types),
        min_confidence=data.min_confidence,
        options=_own_options(options),
    )


def spec_from_config(config: DetectionProviderConfig, secrets: SecretBox) -> ProviderSpec:
    api_key = secrets.decrypt(config.api_key_encrypted) if config.api_key_encrypted else None
    options = dict(config.options or {})
    common = CommonOptions.model_validate(options)
    return ProviderSpec(
        name=config.name,
        kind=config.kind,
        base_url=config.base_url,
        api_key=api_key,
        timeout_seconds=config.timeout_seconds,
        connect_timeout_seconds=common.connect_timeout_seconds,
        max_retries=config.max_retries,
        retry_backoff_seconds=common.retry_backoff_seconds,
        detection_types=frozenset(config.detection_types),
        min_confidence=config.min_confidence,
        options=_own_options(options),
    )


def _own_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _COMMON_KEYS}


async def list_providers(session: AsyncSession) -> list[DetectionProviderConfig]:
    return list(
        await session.scalars(select(DetectionProviderConfig).order_by(DetectionProviderConfig.id))
    )


async def get_provider(session: AsyncSession, provider_id: int) -> DetectionProviderConfig:
    # Provider ids are 32-bit: a larger number names none (and cannot be bound on PostgreSQL).
    in_range = 1 <= provider_id <= 2**31 - 1
    config = await session.get(DetectionProviderConfig, provider_id) if in_range else None
    if config is None:
        raise NotFound(f"no provider with id {provider_id}")
    return config


async def get_default_provider(session: AsyncSession) -> DetectionProviderConfig | None:
    return await session.scalar(
        select(DetectionProviderConfig).where(DetectionProviderConfig.is_default.is_(True))
    )


async def ensure_default_provider(session: AsyncSession) -> None:
    """On an empty table, store the built-in detector as the default provider."""
    if await session.scalar(select(DetectionProviderConfig.id).limit(1)) is None:
        session.add(
            DetectionProviderConfig(
                name=BUILTIN_NAME, kind="builtin", detection_types=["face", "person", "vehicle"],
                min_confidence=0.4, enabled=True, is_default=True, options={},
                timeout_seconds=30.0, max_retries=0,
            )
        )


async def create_provider(
    session: AsyncSession, data: ProviderCreate, secrets: SecretBox, *, actor: str | None,
    policy: ProviderAddressPolicy | None = None,
) -> DetectionProviderConfig:
    await _ensure_name_free(session, data.name)
    check_provider_url(policy, data.base_url)
    validate_options(data.kind, data.options)
    if data.is_default:
        await _clear_default(session)
    config = DetectionProviderConfig(
        name=data.name,
        kind=data.kind,
        base_url=data.base_url,
        timeout_seconds=data.timeout_seconds,
        max_retries=data.max_retries,
        detection_types=sorted(set(data.detection_types)),
        min_confidence=data.min_confidence,
        enabled=data.enabled,
        is_default=data.is_default,
        options=data.options,
    )
    _set_api_key(config, data.api_key.get_secret_value() if data.api_key else None, secrets)
    session.add(config)
    await session.flush()
    record_event(session, EventType.PROVIDER_CREATED, f"provider {config.name!r} created",
                 provider=config.name, actor=actor, payload=_audit_payload(config))
    return config


async def update_provider(
    session: AsyncSession,
    provider_id: int,
    patch: ProviderPatch,
    secrets: SecretBox,
    *,
    actor: str | None,
    policy: ProviderAddressPolicy | None = None,
) -> DetectionProviderConfig:
    config = await get_provider(session, provider_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("base_url"):
        check_provider_url(policy, changes["base_url"])
    if "name" in changes and changes["name"] != config.name:
        await _ensure_name_free(session, changes["name"])
    if config.kind != "builtin" and "base_url" in changes and not changes["base_url"]:
        raise ValidationFailed(f"a {config.kind} provider needs a base_url")
    if "options" in changes:
        validate_options(config.kind, changes["options"] or {})
    if changes.get("is_default"):
        await _clear_default(session, keep=config.id)
    for field in ("name", "base_url", "timeout_seconds", "max_retries", "min_confidence",
                  "enabled", "is_default", "options"):
        if field in changes and changes[field] is not None:
            setattr(config, field, changes[field])
    if changes.get("detection_types") is not None:
        config.detection_types = sorted(set(changes["detection_types"]))
    if "api_key" in patch.model_fields_set:
        _set_api_key(config, patch.api_key.get_secret_value() if patch.api_key else None, secrets)
    await session.flush()
    record_event(session, EventType.PROVIDER_UPDATED, f"provider {config.name!r} updated",
                 provider=config.name, actor=actor,
                 payload={**_audit_payload(config), "changed": sorted(patch.model_fields_set)})
    return config


async def put_default_provider(
    session: AsyncSession, data: DefaultProviderPut, secrets: SecretBox, *, actor: str | None,
    policy: ProviderAddressPolicy | None = None,
) -> DetectionProviderConfig:
    """Replace the default provider's settings, creating it if there is none."""
    check_provider_url(policy, data.base_url)
    current = await get_default_provider(session)
    if current is None:
        create = ProviderCreate(**data.model_dump(exclude={"name"}), name=data.name or "default",
                                is_default=True)
        return await create_provider(session, create, secrets, actor=actor, policy=policy)
    validate_options(data.kind, data.options)
    if data.name and data.name != current.name:
        await _ensure_name_free(session, data.name)
        current.name = data.name
    current.kind = data.kind
    current.base_url = data.base_url
    current.timeout_seconds = data.timeout_seconds
    current.max_retries = data.max_retries
    current.detection_types = sorted(set(data.detection_types))
    current.min_confidence = data.min_confidence
    current.enabled = data.enabled
    current.options = data.options
    if "api_key" in data.model_fields_set:
        _set_api_key(current, data.api_key.get_secret_value() if data.api_key else None, secrets)
    await session.flush()
    record_event(session, EventType.PROVIDER_UPDATED,
                 f"default provider {current.name!r} replaced", provider=current.name,
                 actor=actor, payload=_audit_payload(current))
    return current


async def delete_provider(session: AsyncSession, provider_id: int, *, actor: str | None) -> None:
    config = await get_provider(session, provider_id)
    record_event(session, EventType.PROVIDER_DELETED, f"provider {config.name!r} deleted",
                 provider=config.name, actor=actor, severity=Severity.WARNING,
                 payload=_audit_payload(config))
    await session.delete(config)
    await session.flush()


async def provider_for_camera(
    session: AsyncSession, camera: Camera, settings: Settings
) -> tuple[DetectionProviderConfig | None, ProviderSpec | None]:
    """The camera's provider, else the default, else the built-in detector (config None).

    A disabled provider is not called: the caller gets `ProviderUnavailable`.
    """
    config = None
    if camera.provider_id is not None:
        config = await session.get(DetectionProviderConfig, camera.provider_id)
    if config is None:
        config = await get_default_provider(session)
    if config is None:
        return None, builtin_spec(settings)
    if not config.enabled:
        raise ProviderUnavailable(f"provider {config.name!r} is disabled", provider=config.name)
    return config, None


async def resolve_provider(
    session: AsyncSession,
    camera: Camera,
    secrets: SecretBox,
    settings: Settings,
    provider_id: int | None = None,
) -> tuple[DetectionProviderConfig | None, ProviderSpec]:
    """The provider to call for `camera`: `provider_id` when it still exists (a queue item keeps
    the provider chosen when its frame arrived), else as `provider_for_camera` chooses."""
    if provider_id is not None:
        config = await session.get(DetectionProviderConfig, provider_id)
        if config is not None:
            if not config.enabled:
                raise ProviderUnavailable(f"provider {config.name!r} is disabled",
                                          provider=config.name)
            return config, spec_from_config(config, secrets)
    config, fallback = await provider_for_camera(session, camera, settings)
    if config is not None:
        return config, spec_from_config(config, secrets)
    assert fallback is not None
    return None, fallback


def builtin_spec(settings: Settings) -> ProviderSpec:
    """The built-in detector, used when no provider is configured at all."""
    del settings  # the built-in detector's own settings are read where it is loaded
    return ProviderSpec(name=BUILTIN_NAME, kind="builtin", timeout_seconds=30.0, max_retries=0)


def _set_api_key(config: DetectionProviderConfig, key: str | None, secrets: SecretBox) -> None:
    config.api_key_encrypted = secrets.encrypt(key) if key else None
    config.api_key_hint = mask(key) if key else None


async def _ensure_name_free(session: AsyncSession, name: str) -> None:
    taken = await session.scalar(
        select(DetectionProviderConfig.id).where(DetectionProviderConfig.name == name)
    )
    if taken is not None:
        raise Conflict(f"a provider named {name!r} already exists")


async def _clear_default(session: AsyncSession, keep: int | None = None) -> None:
    statement = update(DetectionProviderConfig).values(is_default=False)
    if keep is not None:
        statement = statement.where(DetectionProviderConfig.id != keep)
    await session.execute(statement.where(DetectionProviderConfig.is_default.is_(True)))
    await session.flush()


def _audit_payload(config: DetectionProviderConfig) -> dict[str, Any]:
    # Never the key itself: only whether there is one.
    return {"provider_id": config.id, "kind": config.kind, "base_url": config.base_url,
            "has_api_key": config.api_key_encrypted is not None, "enabled": config.enabled,
            "is_default": config.is_default}
