"""
Fixtures of the reliability tests, and the figures they measured.

With ``ASANA_RELIABILITY_REPORT=1`` in the environment (``scripts/reliability`` sets it) the session
ends with the figures as Markdown tables, the ones ``docs/reliability.md`` publishes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.exports import midnight

from .support import FIGURES, Worker, figures_report, running_worker


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """The forking export worker, shared by the session's tests; ended with every export it forked."""
    with running_worker(tmp_path_factory.mktemp("worker") / "worker.log") as running:
        yield running


@pytest.fixture
def day_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAsana]:
    """
    A stand-in with 1,500 events a day over the last three days, as ``asana_audit_log_default``.

    Big enough that an export of one day takes 30 pages of 50 events, small enough for many rounds.
    """
    with FakeAsana(seed=11, events_per_day=1500, start=midnight(4), end=midnight(1)) as fake:
        monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", fake.connection_json())
        yield fake


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the measured figures when ``ASANA_RELIABILITY_REPORT`` is set."""
    if not os.environ.get("ASANA_RELIABILITY_REPORT") or not FIGURES:
        return
    terminalreporter.section("reliability figures (docs/reliability.md)")
    for line in figures_report():
        terminalreporter.write_line(line)
