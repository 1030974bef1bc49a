"""API keys: created, checked, listed and revoked. Keys are stored as SHA-256 digests only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.auth.permissions import Permission, Role
from framewatch.core.config import Settings
from framewatch.core.database import utcnow
from framewatch.core.errors import Conflict, Forbidden, NotFound
from framewatch.core.secrets import write_private_file
from framewatch.events.service import EventType, record_event
from framewatch.models import ApiKey

ADMIN_KEY_FILE = "admin-api-key"
# last_used_at is a hint, not an audit log: refresh it at most this often per key.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name, role and camera scope."""

    key_id: int
    name: str
    role: Role
    # The cameras the key may see and send frames for; None: every camera.
    camera_scope: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        return f"key:{self.name}"

    @property
    def permissions(self) -> frozenset[Permission]:
        return self.role.permissions

    def allows(self, permission: Permission) -> bool:
        return self.role.allows(permission)

    def sees_camera(self, camera_id: str | None) -> bool:
        return self.camera_scope is None or camera_id in self.camera_scope

    def check_visible(self, camera_id: str) -> None:
        """404 for a camera outside the key's scope: to this key, it does not exist."""
        if not self.sees_camera(camera_id):
            raise NotFound(f"no camera with id {camera_id!r}")

    def check_camera(self, camera_id: str) -> None:
        """Refuse (403) acting on a camera outside the key's scope."""
        if not self.sees_camera(camera_id):
            raise Forbidden(f"this key is not allowed camera {camera_id!r}", camera_id=camera_id)


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """The outcome of checking a key: a principal, or why not (for the audit trail)."""

    principal: Principal | None
    reason: str  # "ok", "unknown", "revoked", "expired"
    key_name: str | None = None


def generate_key() -> str:
    return "fw_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
    camera_ids: list[str] | None = None,
    key: str | None = None,
    actor: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself, which is never retrievable again."""
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"an API key named {name!r} already exists")
    key = key or generate_key()
    row = ApiKey(
        name=name, role=role.value, key_hash=hash_key(key), prefix=key[:8], expires_at=expires_at,
        camera_ids=sorted(set(camera_ids)) if camera_ids is not None else None,
    )
    session.add(row)
    await session.flush()
    record_event(
        session,
        EventType.KEY_CREATED,
        f"API key {name!r} created with role {role.value}",
        actor=actor,
        payload={"key_id": row.id, "role": role.value, "camera_ids": row.camera_ids,
                 "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return row, key


async def check_key(session: AsyncSession, key: str) -> KeyCheck:
    """Whether `key` is a usable key, and whose (a rotated key's previous secret counts until
    its grace period ends); records the last use at most once a minute."""
    digest = hash_key(key)
    row = await session.scalar(
        select(ApiKey).where(or_(ApiKey.key_hash == digest, ApiKey.previous_key_hash == digest))
    )
    now = utcnow()
    if row is None:
        return KeyCheck(None, "unknown")
    if row.revoked_at is not None:
        return KeyCheck(None, "revoked", row.name)
    if row.expires_at is not None and row.expires_at <= now:
        return KeyCheck(None, "expired", row.name)
    if row.key_hash != digest and (row.previous_expires_at is None
                                   or row.previous_expires_at <= now):
        return KeyCheck(None, "rotated", row.name)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        await session.commit()
    scope = frozenset(row.camera_ids) if row.camera_ids is not None else None
    return KeyCheck(Principal(key_id=row.id, name=row.name, role=Role(row.role),
                              camera_scope=scope), "ok", row.name)


async def authenticate(session: AsyncSession, key: str) -> Principal | None:
    """The principal for `key`, or None if it is unknown, revoked or expired."""
    return (await check_key(session, key)).principal


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def get_key(session: AsyncSession, key_id: int) -> ApiKey:
    row = await session.get(ApiKey, key_id) if 1 <= key_id <= 2**31 - 1 else None
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    return row


async def revoke_key(session: AsyncSession, key_id: int, *, actor: str | None = None) -> ApiKey:
    row = await get_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_event(
            session,
            EventType.KEY_REVOKED,
            f"API key {row.name!r} revoked",
            actor=actor,
            payload={"key_id": row.id},
        )
    return row


async def rotate_key(
    session: AsyncSession, key_id: int, *, grace: timedelta = timedelta(0),
    actor: str | None = None,
) -> tuple[ApiKey, str]:
    """Give the key a new secret (returned once); the old one keeps working for `grace`, so
    that agents can be switched over without downtime."""
    row = await get_key(session, key_id)
    if row.revoked_at is not None:
        raise Conflict(f"API key {row.name!r} is revoked; create a new one")
    key = generate_key()
    now = utcnow()
    row.previous_key_hash = row.key_hash if grace > timedelta(0) else None
    row.previous_expires_at = now + grace if grace > timedelta(0) else None
    row.key_hash, row.prefix, row.rotated_at = hash_key(key), key[:8], now
    record_event(
        session, EventType.KEY_ROTATED, f"API key {row.name!r} rotated", actor=actor,
        payload={"key_id": row.id, "grace_seconds": grace.total_seconds()},
    )
    await session.flush()
    return row, key


async def update_key(
    session: AsyncSession, key_id: int, changes: dict[str, Any], *, actor: str | None = None
) -> ApiKey:
    """Change a key's expiry or camera scope (the fields present in `changes`)."""
    row = await get_key(session, key_id)
    if "expires_at" in changes:
        row.expires_at = changes["expires_at"]
    if "camera_ids" in changes:
        ids = changes["camera_ids"]
        row.camera_ids = sorted(set(ids)) if ids is not None else None
    record_event(
        session, EventType.KEY_UPDATED, f"API key {row.name!r} changed", actor=actor,
        payload={"key_id": row.id, "changed": sorted(changes),
                 "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                 "camera_ids": row.camera_ids},
    )
    await session.flush()
    return row


@dataclass(frozen=True, slots=True)
class AdminKeyBootstrap:
    """What start-up did about the admin key: the key to print, where it came from."""

    key: str | None
    source: str


async def ensure_admin_key(session: AsyncSession, settings: Settings) -> AdminKeyBootstrap:
    """Make sure an admin can log in: the configured key, the saved one, or a new one."""
    configured = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    if configured:
        digest = hash_key(configured)
        row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if row is None:
            await create_key(session, name=_free_admin_name(await list_keys(session)),
                             role=Role.ADMIN, key=configured, actor="system")
        elif row.revoked_at is not None or row.role != Role.ADMIN.value:
            row.revoked_at, row.role, row.expires_at = None, Role.ADMIN.value, None
        return AdminKeyBootstrap(key=configured, source="FRAMEWATCH_ADMIN_API_KEY")

    key_file = settings.data_dir / ADMIN_KEY_FILE
    saved = key_file.read_text().strip() if key_file.exists() else None
    if saved and await authenticate(session, saved) is not None:
        return AdminKeyBootstrap(key=saved, source=str(key_file))
    admins = await session.scalar(
        select(ApiKey.id).where(ApiKey.role == Role.ADMIN.value, ApiKey.revoked_at.is_(None))
    )
    if admins is not None:
        # Admin keys exist but the saved one is gone: never mint a key nobody asked for.
        return AdminKeyBootstrap(key=None, source="existing admin keys")
    _, key = await create_key(
        session, name=_free_admin_name(await list_keys(session)), role=Role.ADMIN, actor="system"
    )
    write_private_file(key_file, key)
    return AdminKeyBootstrap(key=key, source=str(key_file))


def _free_admin_name(existing: list[ApiKey]) -> str:
    names = {row.name for row in existing}
    candidate, n = "admin", 1
    while candidate in names:
        n += 1
        candidate = f"admin-{n}"
    return candidate
