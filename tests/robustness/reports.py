"""Reports the robustness tests hand to the terminal summary (see conftest.py)."""

from __future__ import annotations

REPORTS: list[tuple[str, str]] = []


def report(title: str, text: str) -> None:
    """Print `text` now (seen with `-s`) and keep it for pytest's terminal summary."""
    print(f"--- {title} ---\n{text}")
    REPORTS.append((title, text))
