"""Encryption at rest for provider API keys (Fernet), and the key it uses."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from framewatch.core.config import Settings

SECRET_KEY_FILE = "secret.key"


class SecretBox:
    """Encrypts and decrypts short secrets with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        # Short-lived tokens get a key of their own, derived from the same secret.
        self._tokens = Fernet(base64.urlsafe_b64encode(
            hashlib.sha256(b"framewatch-token:" + key).digest()))

    def issue_token(self, data: dict[str, Any]) -> str:
        """An encrypted, authenticated, timestamped token carrying `data`."""
        return self._tokens.encrypt(json.dumps(data).encode()).decode()

    def read_token(self, token: str, max_age_seconds: float) -> dict[str, Any] | None:
        """The data of a token issued here at most `max_age_seconds` ago; None otherwise."""
        try:
            data = json.loads(self._tokens.decrypt(token.encode(), ttl=int(max_age_seconds)))
        except (InvalidToken, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a stored secret cannot be decrypted: FRAMEWATCH_SECRET_KEY differs from the key "
                "it was encrypted with"
            ) from exc


def fernet_key_from(secret: str) -> bytes:
    """Use `secret` as a Fernet key if it is one; otherwise derive one from it (any passphrase)."""
    raw = secret.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(b"framewatch-secret-key:" + raw).digest())


def load_secret_box(settings: Settings) -> SecretBox:
    """The configured key, or the one generated into the data dir (created 0600 on first use)."""
    if settings.secret_key is not None:
        return SecretBox(fernet_key_from(settings.secret_key.get_secret_value()))
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        write_private_file(path, Fernet.generate_key().decode())
    return SecretBox(fernet_key_from(path.read_text().strip()))


def write_private_file(path: Path, content: str) -> None:
    """Write `content` to a file only its owner can read (created with mode 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")
    os.chmod(path, 0o600)


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a file only its owner can read (mode 0600), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def mask(secret: str) -> str:
    """A hint that tells secrets apart without revealing them: `••••abcd`."""
    return "••••" + secret[-4:] if len(secret) >= 8 else "••••"


async def rotate_secrets(
    session: AsyncSession, old: SecretBox, new_secret: str, settings: Settings,
    *, actor: str | None,
) -> dict[str, int]:
    """Re-encrypt every provider API key and webhook secret from `old` to `new_secret` (commits);
    how many of each. When the key lives in the data dir, the new one is written beside it first
    and swapped in only after the database commit, so that a crash at any point leaves a key that
    opens what is stored."""
    from sqlalchemy import select

    from framewatch.events.service import EventType, record_event
    from framewatch.models import DetectionProviderConfig, WebhookSubscription

    new = SecretBox(fernet_key_from(new_secret))
    pending = settings.data_dir / (SECRET_KEY_FILE + ".new")
    if settings.secret_key is None:
        write_private_file(pending, new_secret)
    configs = list(await session.scalars(
        select(DetectionProviderConfig).where(DetectionProviderConfig.api_key_encrypted.is_not(None))
    ))
    for config in configs:
        assert config.api_key_encrypted is not None
        config.api_key_encrypted = new.encrypt(old.decrypt(config.api_key_encrypted))
    webhooks = list(await session.scalars(select(WebhookSubscription)))
    for webhook in webhooks:
        webhook.secret_encrypted = new.encrypt(old.decrypt(webhook.secret_encrypted))
    counts = {"providers": len(configs), "webhooks": len(webhooks)}
    record_event(session, EventType.SECRET_KEY_ROTATED,
                 f"secret key rotated; {len(configs)} provider API keys and {len(webhooks)} "
                 "webhook secrets re-encrypted", actor=actor, payload=dict(counts))
    await session.commit()
    if settings.secret_key is None:
        os.replace(pending, settings.data_dir / SECRET_KEY_FILE)
    return counts
