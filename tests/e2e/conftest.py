"""
Fixtures of the end-to-end tests: where they keep what a person should be able to look at afterwards.

Screenshots and similar artifacts go to ``$ASANA_E2E_ARTIFACTS`` when that is set (CI sets it to a
folder it keeps), else to ``<repo>/.e2e-artifacts/<UTC timestamp>/``; the folder is printed at the end
of the run.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

#: The environment variable naming the artifacts folder.
ARTIFACTS_ENV = "ASANA_E2E_ARTIFACTS"
_REPO = Path(__file__).resolve().parents[2]
_used: list[Path] = []


@pytest.fixture(scope="session")
def e2e_artifacts_root() -> Path:
    """The folder of this run's artifacts (made on first use, printed at the end of the run)."""
    configured = os.environ.get(ARTIFACTS_ENV)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(configured) if configured else _REPO / ".e2e-artifacts" / stamp
    root.mkdir(parents=True, exist_ok=True)
    _used.append(root)
    return root


@pytest.fixture
def e2e_artifacts(e2e_artifacts_root: Path, request: pytest.FixtureRequest) -> Path:
    """A folder for this test's artifacts, named after the test, inside :func:`e2e_artifacts_root`."""
    folder = e2e_artifacts_root / str(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the artifacts are, so that a person (or CI) can look at them."""
    for root in _used:
        terminalreporter.write_line(f"e2e artifacts (screenshots): {root}")
