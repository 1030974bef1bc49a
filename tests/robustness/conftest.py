"""Robustness tests: their reports are printed in pytest's terminal summary, so that CI shows
them whether or not output is captured (`-s`)."""

from __future__ import annotations

import pytest

from tests.robustness.reports import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("robustness reports")
    for title, text in REPORTS:
        terminalreporter.write_line(f"--- {title} ---")
        for line in text.splitlines():
            terminalreporter.write_line(line)
