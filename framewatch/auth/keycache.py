"""A process's short-lived memory of key checks: one database lookup per key per few seconds."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from framewatch.auth.service import KeyCheck


class KeyCache:
    """Recent key checks of this process, each trusted for `ttl_seconds`."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, KeyCheck]] = OrderedDict()
        self._max_entries = max_entries
        # Database checks in flight, by digest: when a busy key's entry expires, the requests
        # that arrive meanwhile wait for one check instead of each querying the database.
        self.checking: dict[str, asyncio.Task[KeyCheck]] = {}

    def get(self, digest: str) -> KeyCheck | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, check: KeyCheck) -> None:
        self._entries[digest] = (time.monotonic() + self.ttl_seconds, check)
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget_key(self, key_id: int) -> None:
        """Drop every cached check of one key (after a revocation, rotation or change)."""
        for digest, (_, check) in list(self._entries.items()):
            if check.principal is not None and check.principal.key_id == key_id:
                del self._entries[digest]
