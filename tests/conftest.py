"""
Shared test set-up.

Airflow reads ``AIRFLOW_HOME`` when it is first imported, so a private, temporary home is set here,
before any test module imports Airflow. Tests that need the metadata database (SQLite in that home)
ask for the ``airflow_db`` fixture, which migrates it once per session; tests that run DAGs ask for
``dags_folder``. Shared test code that is not a fixture lives in ``tests/helpers``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="asana-audit-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.pop("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", None)
(_HOME / "dags").mkdir(exist_ok=True)

from airflow_provider_asana_audit.budget import RateLimiter  # noqa: E402
from airflow_provider_asana_audit.redis_budget import RedisBudget  # noqa: E402
from airflow_provider_asana_audit.testing import FakeAsana  # noqa: E402
from tests.helpers.archive import Archive, exported_archive  # noqa: E402
from tests.helpers.services import Service, moto_s3  # noqa: E402


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The temporary ``AIRFLOW_HOME`` of this test session."""
    return _HOME


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """A migrated SQLite metadata database in the session's ``AIRFLOW_HOME``."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return airflow_home / "airflow.db"


@pytest.fixture(scope="session")
def dags_folder(airflow_home: Path, airflow_db: Path) -> Path:
    """The DAGs folder of the session's migrated ``AIRFLOW_HOME``, where DAGs under test are written."""
    return airflow_home / "dags"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "standin(**options): the FakeAsana options of the standin (or fake) fixture"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    # Each test process (each xdist worker too) made its own home; none is left behind.
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[FakeAsana]:
    """
    A running stand-in on 127.0.0.1, by default with a week of generated events (small, for speed).

    A module or test that needs other events says so with ``pytest.mark.standin(**options)``, options
    of :class:`FakeAsana` (``seed``, ``start``, ``end``, ``events_per_day``...).
    """
    marker = request.node.get_closest_marker("standin")
    options: dict[str, Any] = {"seed": 7, "events_per_day": 60, **(marker.kwargs if marker else {})}
    with FakeAsana(**options) as running:
        yield running


@pytest.fixture
def fake(standin: FakeAsana) -> FakeAsana:
    """:func:`standin`, under the name the stand-in's and the client's tests give it."""
    return standin


@pytest.fixture
def asana_conn(standin: FakeAsana, monkeypatch: pytest.MonkeyPatch) -> FakeAsana:
    """``asana_audit_log_default`` pointing at the stand-in, through the environment like a user would."""
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", standin.connection_json())
    return standin


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """A fresh directory for export files."""
    path = tmp_path / "exports"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def archive(dags_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The archive the export example wrote for 7 days (shared: never damage it, damage a copy)."""
    return exported_archive(dags_folder, tmp_path_factory.mktemp("exported") / "archive")


@pytest.fixture
def damaged(archive: Archive, tmp_path: Path) -> Archive:
    """A copy of the archive, to damage."""
    return archive.copy(tmp_path / "archive")


@pytest.fixture(scope="session")
def signed_archive(dags_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """
    The archive the export example wrote for 7 days with a signing key, sealed after each day (shared:
    never damage it, damage a copy).
    """
    from airflow_provider_asana_audit.evidence import SigningKey

    folder = tmp_path_factory.mktemp("signed")
    return exported_archive(dags_folder, folder / "archive", signing_key=SigningKey.generate())


@pytest.fixture(autouse=True)
def _forget_learnt_token_rates() -> None:
    """
    Start every test with no learnt rate: the process keeps one adaptive limiter per token, and a
    test's 429s would otherwise slow down the next tests that use the stand-in's token.
    """
    RateLimiter._registry.clear()
    RedisBudget._registry.clear()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """
    moto's S3 server, one for the session: Airflow caches a storage connection's filesystem per process,
    so a second server on another port would be missed by the tests that come after the first.
    Each module makes its own buckets.
    """
    with pytest.MonkeyPatch.context() as patch:
        # Read by the server when it starts: the smallest part of a multipart upload (but the last),
        # lowered so that a test copies tiny parts.
        patch.setenv("S3_UPLOAD_PART_MIN_SIZE", "1")
        with moto_s3(tmp_path_factory.mktemp("moto")) as service:
            yield service
