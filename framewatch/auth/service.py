"""API keys: created, checked, listed and revoked. Keys are stored as SHA-256 digests only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings
from framewatch.core.database import utcnow
from framewatch.core.errors import Conflict, NotFound
from framewatch.core.secrets import write_private_file
from framewatch.events.service import EventType, record_event
from framewatch.models import ApiKey

ADMIN_KEY_FILE = "admin-api-key"
# last_used_at is a hint, not an audit log: refresh it at most this often per key.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "operator": 1, "admin": 2}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"key:{self.name}"


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
    key: str | None = None,
    actor: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself, which is never retrievable again."""
    if await session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise Conflict(f"an API key named {name!r} already exists")
    key = key or generate_key()
    row = ApiKey(
        name=name, role=role.value, key_hash=hash_key(key), prefix=key[:8], expires_at=expires_at
    )
    session.add(row)
    await session.flush()
    record_event(
        session,
        EventType.KEY_CREATED,
        f"API key {name!r} created with role {role.value}",
        actor=actor,
        payload={"key_id": row.id, "role": role.value},
    )
    return row, key


async def authenticate(session: AsyncSession, key: str) -> Principal | None:
    """The principal for `key`, or None if it is unknown, revoked or expired."""
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    now = utcnow()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        await session.commit()
    return Principal(key_id=row.id, name=row.name, role=Role(row.role))


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.id)))


async def revoke_key(session: AsyncSession, key_id: int, *, actor: str | None = None) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
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
