"""Permissions, and the roles that are named sets of them.

Every endpoint declares the one permission it needs (`framewatch.auth.dependencies.require`);
`docs/security.md` lists them, and a test checks that list against the app's routes.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    DETECTIONS_READ = "detections:read"
    FRAMES_READ = "frames:read"
    FRAMES_WRITE = "frames:write"
    EVENTS_READ = "events:read"
    STATS_READ = "stats:read"
    CAMERAS_READ = "cameras:read"
    CAMERAS_ADMIN = "cameras:admin"
    PROVIDERS_READ = "providers:read"
    PROVIDERS_ADMIN = "providers:admin"
    QUEUE_ADMIN = "queue:admin"
    KEYS_ADMIN = "keys:admin"
    PERSONS_READ = "persons:read"
    PERSONS_ADMIN = "persons:admin"
    RETENTION_ADMIN = "retention:admin"
    WEBHOOKS_ADMIN = "webhooks:admin"


_READ = frozenset({
    Permission.DETECTIONS_READ, Permission.FRAMES_READ, Permission.EVENTS_READ,
    Permission.STATS_READ, Permission.CAMERAS_READ, Permission.PROVIDERS_READ,
    Permission.PERSONS_READ,
})


class Role(StrEnum):
    """`agent`: a camera agent — sends frames, nothing else. `viewer`: reads everything but keys.
    `operator`: a viewer that may send frames. `admin`: everything."""

    AGENT = "agent"
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]

    def allows(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self]


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT: frozenset({Permission.FRAMES_WRITE, Permission.CAMERAS_READ}),
    Role.VIEWER: _READ,
    Role.OPERATOR: _READ | {Permission.FRAMES_WRITE},
    Role.ADMIN: frozenset(Permission),
}

# Powers over what every camera shares. With them a key limited to some cameras could reach the
# others — mint or rotate a key of every camera, point the default provider (which gets every
# camera's frames) at its own server, read and apply every camera's retention — so they need a
# key that is not limited to cameras.
UNSCOPED_ONLY = frozenset({Permission.KEYS_ADMIN, Permission.PROVIDERS_ADMIN,
                           Permission.RETENTION_ADMIN,
                           # A webhook can receive every camera's detections.
                           Permission.WEBHOOKS_ADMIN})
