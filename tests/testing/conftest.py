"""Fixtures of the stand-in's tests: a naive client of the stand-in (``fake``, in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_asana_audit.testing import FakeAsana

from .support import NaiveClient


@pytest.fixture
def client(fake: FakeAsana) -> Iterator[NaiveClient]:
    """A naive client of :func:`fake`."""
    naive = NaiveClient(fake)
    yield naive
    naive.close()
