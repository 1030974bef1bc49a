"""What is known about the request being served, for the audit trail and the logs.

Set once per request (by the authentication dependency and, for the id, by the request-id
middleware); read where events are written, so that every event a request causes names the
address it came from without every service passing it along.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    address: str | None = None
    request_id: str | None = None


_NOTHING_KNOWN = RequestContext()  # frozen: safe to share as the default
current_request: ContextVar[RequestContext] = ContextVar(
    "framewatch_request", default=_NOTHING_KNOWN
)
