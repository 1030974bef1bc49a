"""Keyset pagination on (timestamp, id), newest first, and the checks its inputs need."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from framewatch.core.errors import BadRequest

# Row ids are 64-bit; a larger number cannot be bound as a parameter on either database.
MAX_ROW_ID = 2**63 - 1


def encode_cursor(moment: datetime, row_id: int) -> str:
    """An opaque cursor for the row after which the next page starts."""
    raw = json.dumps([moment.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, row_id = json.loads(raw)
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None or not is_row_id(row_id):
            raise ValueError("bad cursor fields")
        # In UTC like the stored times: SQLite would compare the wall-clock time, offset ignored.
        return moment.astimezone(UTC), row_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("the cursor is not one this API gave out", field="cursor") from exc


def is_row_id(value: object) -> bool:
    """An id the database can hold (64-bit, positive); `True` is an int to Python, not here."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ROW_ID


def refuse_nul(field: str, value: str | None) -> None:
    # No stored value has one, and PostgreSQL refuses a NUL in a query parameter outright.
    if value is not None and "\x00" in value:
        raise BadRequest(f"{field} must not contain NUL characters", field=field)


def in_utc(field: str, value: datetime | None) -> datetime | None:
    """The time in UTC, as stored; a time whose UTC date is past year 9999 or before 1 is 400."""
    try:
        return value.astimezone(UTC) if value is not None else None
    except OverflowError:
        raise BadRequest(f"{field} is out of range", field=field) from None
