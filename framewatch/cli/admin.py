"""`framewatch cameras ...` and `framewatch keys ...`."""

from __future__ import annotations

from datetime import timedelta

import click

from framewatch.cli.common import (
    fail_on_domain_errors,
    load_settings,
    run_with_settings,
    validated,
    with_session,
)
from framewatch.core.config import Settings


@click.group()
def cameras() -> None:
    """List, add, change and remove cameras."""


@cameras.command("list")
def cameras_list() -> None:
    """List cameras."""
    from framewatch.cameras.service import list_cameras

    rows = run_with_settings(lambda s: with_session(s, list_cameras))
    for camera in rows:
        state = "enabled" if camera.enabled else "disabled"
        provider = camera.provider_id if camera.provider_id is not None else "default"
        click.echo(f"{camera.id}\t{camera.name}\t{camera.location or '-'}\t{state}\t"
                   f"provider={provider}")
    if not rows:
        click.echo("no cameras yet: `framewatch cameras add ID --name NAME`")


@cameras.command("add")
@click.argument("camera_id")
@click.option("--name", required=True, help="A name people read.")
@click.option("--location", default=None, help="Where the camera is.")
@click.option("--provider-id", type=int, default=None, help="Its own provider (default: none).")
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@fail_on_domain_errors
def cameras_add(camera_id: str, name: str, location: str | None, provider_id: int | None,
                disabled: bool) -> None:
    """Add camera CAMERA_ID (a slug such as front-door)."""
    from framewatch.cameras.schemas import CameraCreate
    from framewatch.cameras.service import create_camera

    data = validated(CameraCreate, {"id": "CAMERA_ID", "name": "--name", "location": "--location"},
                      id=camera_id, name=name, location=location, enabled=not disabled,
                      provider_id=provider_id)
    run_with_settings(lambda s: with_session(s, lambda db: create_camera(db, data, actor="cli")))
    click.echo(f"camera {camera_id} added")


@cameras.command("set")
@click.argument("camera_id")
@click.option("--name", default=None)
@click.option("--location", default=None)
@click.option("--enable/--disable", "enabled", default=None)
@fail_on_domain_errors
def cameras_set(camera_id: str, name: str | None, location: str | None,
                enabled: bool | None) -> None:
    """Change a camera's name, location or enabled state."""
    from framewatch.cameras.schemas import CameraPatch
    from framewatch.cameras.service import update_camera

    values = {k: v for k, v in {"name": name, "location": location, "enabled": enabled}.items()
              if v is not None}
    if not values:
        raise click.UsageError("nothing to change: give --name, --location, --enable or --disable")
    patch = validated(CameraPatch, {"name": "--name", "location": "--location"}, **values)
    run_with_settings(
        lambda s: with_session(s, lambda db: update_camera(db, camera_id, patch, actor="cli"))
    )
    click.echo(f"camera {camera_id} updated")


@cameras.command("remove")
@click.argument("camera_id")
@click.confirmation_option(prompt="Delete the camera with all its frames and detections?")
@fail_on_domain_errors
def cameras_remove(camera_id: str) -> None:
    """Delete a camera with its frames, detections and queue items."""
    from framewatch.cameras.service import delete_camera
    from framewatch.frames.service import delete_unreferenced_files
    from framewatch.frames.storage import FrameStore

    async def remove(settings: Settings) -> None:
        paths = await with_session(settings,
                                    lambda db: delete_camera(db, camera_id, actor="cli"))
        await with_session(
            settings,
            lambda db: delete_unreferenced_files(db, FrameStore(settings.frames_dir), paths),
        )

    run_with_settings(remove)
    click.echo(f"camera {camera_id} removed")


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(["agent", "viewer", "operator", "admin"]),
              required=True,
              help="agent: sends frames only; viewer: reads; operator: reads and sends "
              "frames; admin: everything.")
@click.option("--name", required=True, help="A unique name, e.g. gate-agent.")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None)
@click.option("--camera", "cameras", multiple=True,
              help="Scope the key to this camera (repeat for several); default: every camera.")
@fail_on_domain_errors
def keys_create(role: str, name: str, expires_in_days: int | None, cameras: tuple[str, ...]
                ) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from framewatch.auth.permissions import Role
    from framewatch.auth.schemas import KeyCreate
    from framewatch.auth.service import create_key
    from framewatch.core.database import utcnow

    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    data = validated(KeyCreate, {"name": "--name", "camera_ids": "--camera"}, name=name,
                     role=Role(role), expires_at=expires,
                     camera_ids=list(cameras) if cameras else None)
    _, key = run_with_settings(lambda s: with_session(
        s, lambda db: create_key(db, name=data.name, role=data.role, expires_at=expires,
                                 camera_ids=data.camera_ids, actor="cli")
    ))
    click.echo(key)
    scope = ", ".join(cameras) if cameras else "every camera"
    click.echo(f"(role {role}, name {name}, {scope}; store it now: it cannot be shown again)",
               err=True)


@keys.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    from framewatch.auth.service import list_keys

    for row in run_with_settings(lambda s: with_session(s, list_keys)):
        status = "revoked" if row.revoked_at else "active"
        scope = ",".join(row.camera_ids) if row.camera_ids is not None else "all cameras"
        click.echo(f"{row.id}\t{row.name}\t{row.role}\t{row.prefix}…\t{status}\t"
                   f"last used {row.last_used_at or 'never'}\t{scope}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@fail_on_domain_errors
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID."""
    from framewatch.auth.service import revoke_key

    run_with_settings(lambda s: with_session(s, lambda db: revoke_key(db, key_id, actor="cli")))
    click.echo(f"key {key_id} revoked")


@click.group("secret-key")
def secret_key() -> None:
    """Manage the key that encrypts provider API keys (and webhook secrets) at rest."""


@secret_key.command("rotate")
@click.option("--new-key", default=None,
              help="The new secret (a Fernet key or any passphrase); default: a new random key.")
@click.confirmation_option(prompt="Re-encrypt every stored provider API key and webhook secret "
                                  "with a new key?")
def secret_key_rotate(new_key: str | None) -> None:
    """Re-encrypt every provider API key and webhook secret with a new secret key.

    When the key lives in <data_dir>/secret.key (FRAMEWATCH_SECRET_KEY unset) the file is
    replaced; otherwise the new key is printed: put it in FRAMEWATCH_SECRET_KEY and restart
    every framewatch process. WebSocket tokens issued before are no longer accepted.
    """
    from cryptography.fernet import Fernet

    from framewatch.core.secrets import SECRET_KEY_FILE, load_secret_box, rotate_secrets

    settings = load_settings()
    new_secret = new_key or Fernet.generate_key().decode()
    old_box = load_secret_box(settings)
    counts = run_with_settings(lambda s: with_session(
        s, lambda db: rotate_secrets(db, old_box, new_secret, settings, actor="cli")))
    click.echo(f"{counts['providers']} provider API keys and {counts['webhooks']} webhook "
               "secrets re-encrypted")
    if settings.secret_key is None:
        click.echo(f"the new key is in {settings.data_dir / SECRET_KEY_FILE}; restart every "
                   "framewatch process")
    else:
        click.echo("set FRAMEWATCH_SECRET_KEY to this value and restart every framewatch "
                   "process:")
        click.echo(new_secret)
