"""Fixtures of the stand-in's tests: running stand-ins and naive clients for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_asana_audit.testing import FakeAsana

from .support import NaiveClient


@pytest.fixture
def fake() -> Iterator[FakeAsana]:
    """A running stand-in with a week of generated events (about 210)."""
    with FakeAsana(seed=3, events_per_day=30) as running:
        yield running


@pytest.fixture
def client(fake: FakeAsana) -> Iterator[NaiveClient]:
    """A naive client of :func:`fake`."""
    naive = NaiveClient(fake)
    yield naive
    naive.close()
