"""Webhook signatures: `X-Framewatch-Signature: t=<unix ts>,v1=<hex HMAC-SHA256>`.

The HMAC is over `"<ts>.<body>"` with the subscription's secret, so a receiver can check both that
the body came from framewatch and that it is recent (docs/webhooks.md shows a receiver).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-Framewatch-Signature"
DELIVERY_HEADER = "X-Framewatch-Delivery"
EVENT_HEADER = "X-Framewatch-Event"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance: float = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """What a receiver does: the signature matches and its timestamp is within `tolerance`."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))
