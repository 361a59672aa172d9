"""
docs/testing.md's whole-DAG test, run as a user runs it: its ``conftest.py`` and test module, in
``tests/`` beside a ``dags/`` folder holding the example export DAG, in a pytest process of their own
(the sample's ``conftest.py`` must set Airflow's home before Airflow is imported, which this session
has done long ago).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.docs.markdown import Block, blocks
from tests.helpers.dags import EXAMPLE_DAGS

THIS_FILE = "tests/docs/test_dag_testing.py"
#: Seconds the sample's pytest may take: an Airflow import, a migration and one DAG run.
TIMEOUT = 300


def _samples() -> dict[str, str]:
    """The blocks this file runs, by the file name their first line gives (``# tests/conftest.py``)."""
    found: list[Block] = [
        block
        for block in blocks(Path("docs/testing.md"))
        if block.directive == "run by" and block.argument == THIS_FILE
    ]
    return {block.code.splitlines()[0].removeprefix("# "): block.code for block in found}


def test_the_samples_are_a_conftest_and_a_test_module() -> None:
    assert sorted(_samples()) == ["tests/conftest.py", "tests/test_export_dag.py"]


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS, reason="the sample is written for Airflow 3 (dag.test(logical_date=))"
)
def test_the_whole_dag_sample_passes_in_a_fresh_pytest(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "dags").mkdir(parents=True)
    (project / "tests").mkdir()
    shutil.copy(EXAMPLE_DAGS / "example_asana_audit_export.py", project / "dags")
    for name, code in _samples().items():
        (project / name).write_text(code, encoding="utf-8")
    # A user's shell: none of this session's Airflow settings or connections.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AIRFLOW", "ASANA_"))}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, output
    assert "1 passed" in result.stdout, output
