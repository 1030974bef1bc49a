"""The documentation names what the code has, and nothing the code does not have."""

from __future__ import annotations

import re
from pathlib import Path

from framewatch.events.service import EventType

DOCS = Path(__file__).parent.parent / "docs"


def test_every_event_type_is_documented_and_nothing_else() -> None:
    text = (DOCS / "events.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    documented = {name for line in table for name in re.findall(r"`([a-z_]+\.[a-z_]+)`",
                                                                  line.split("|")[1])}
    assert documented == {event.value for event in EventType}
