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
