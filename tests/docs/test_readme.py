"""The README's front matter stays true: its first commands, and what it says they do."""

from __future__ import annotations

import os
from pathlib import Path

from tests.docs.markdown import REPO, blocks

TWO_COMMANDS = (
    "./scripts/demo    # the main job: the example export DAG through real Airflow, last 3 daily intervals\n"
    "./scripts/test    # every check: ruff, mypy and pytest, on Airflow 3.3.2 and then 2.11.2\n"
)


def test_the_readme_starts_with_the_two_commands() -> None:
    first = blocks(Path("README.md"))[0]
    assert first.language == "bash"
    assert first.code == TWO_COMMANDS
    before = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[: first.line - 1]
    assert not any(line.startswith("```") for line in before)


def test_the_two_commands_exist_and_are_executable() -> None:
    for script in ("scripts/demo", "scripts/test"):
        path = REPO / script
        assert path.is_file(), script
        assert os.access(path, os.X_OK), f"{script} is not executable"


def test_what_the_readme_says_of_the_demo_holds() -> None:
    demo = (REPO / "scripts" / "demo").read_text(encoding="utf-8")
    for name in ("ASANA_TOKEN", "ASANA_WORKSPACE_GID", "ASANA_AUDIT_EXPORT_BASE", "DAYS", "AIRFLOW_VERSION"):
        assert name in demo, name
    assert ".airflow-demo" in demo
    assert "ASANA_AUDIT_EXPORT_BASE:-$ROOT/output}" in demo
    assert 'DAYS="${DAYS:-3}"' in demo
    assert "example_asana_audit_export" in demo
    assert (REPO / "example_dags" / "example_asana_audit_export.py").is_file()


def test_what_the_readme_says_of_the_tests_holds() -> None:
    test = (REPO / "scripts" / "test").read_text(encoding="utf-8")
    assert "${AIRFLOW_VERSIONS:-3.3.2 2.11.2}" in test
    for step in ("ruff", "mypy", "pytest"):
        assert step in test
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
