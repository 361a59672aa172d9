"""
Every fenced code block of README.md and docs/*.md runs, or says why it does not.

Python samples run with the stand-in up, ``AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT`` (and ``ASANA_TOKEN``,
``ASANA_WORKSPACE_GID``, ``ASANA_API_URL``) pointing at it, ``ASANA_AUDIT_EXPORT_BASE`` at real exports,
in the session's temporary ``AIRFLOW_HOME``; samples that define a DAG are parsed by a ``DagBag`` and
must build it. Shell samples run against a copy of the session's migrated metadata database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.docs.conftest import DocsExports
from tests.docs.markdown import REPO, Block, all_blocks
from tests.docs.samples import (
    DATA_LANGUAGES,
    NOT_CODE,
    RUNNABLE,
    build_dags,
    check_data,
    defines_dag,
    run_bash,
    run_python,
    substitute,
)

BLOCKS = all_blocks()
AIRFLOW_MAJOR = "Airflow 3" if AIRFLOW_V_3_0_PLUS else "Airflow 2"


def _run_here(block: Block) -> bool:
    return block.language in RUNNABLE and block.directive in (None, "run on")


def _selected(language: str | frozenset[str]) -> list[Block]:
    languages = {language} if isinstance(language, str) else language
    return [block for block in BLOCKS if _run_here(block) and block.language in languages]


def _ids(blocks: list[Block]) -> list[str]:
    return [block.id for block in blocks]


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """Samples may set ``os.environ`` themselves, as users would: put it back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def sample_env(
    docs_exports: DocsExports,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    restored_environ: None,
) -> dict[str, str]:
    """The environment every sample runs in (see the module's docstring); the cwd is a fresh directory."""
    fake = docs_exports.fake
    values = {
        "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT": fake.connection_json(),
        "ASANA_TOKEN": fake.token,
        "ASANA_WORKSPACE_GID": fake.workspace_gid,
        "ASANA_API_URL": fake.base_url,
        "ASANA_AUDIT_EXPORT_BASE": f"file://{docs_exports.base}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return values


def _code(block: Block, exports: DocsExports) -> str:
    address = exports.fake.base_url.split("://", 1)[1].split("/", 1)[0]
    return substitute(block.code, standin_address=address, export_directory=exports.base)


def _skip_other_airflow(block: Block) -> None:
    if block.directive == "run on" and block.argument != AIRFLOW_MAJOR:
        pytest.skip(f"{block.id} runs on {block.argument} only")


# ---------------------------------------------------------------- every block is run or marked


def test_the_docs_have_blocks_of_every_kind() -> None:
    languages = {block.language for block in BLOCKS}
    assert {"python", "bash", "json", "yaml", "sql"} <= languages
    assert any(defines_dag(block.code) for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_every_block_is_run_or_marked(block: Block) -> None:
    assert block.language, f"{block.id}: give the code block a language (```python, ```bash, ```text ...)"
    if block.language in NOT_CODE:
        assert block.directive is None, f"{block.id}: a {block.language} block is not code: drop the comment"
    elif block.directive == "not run":
        assert block.argument, f"{block.id}: say why the block is not run: <!-- not run: <why> -->"
    elif block.directive == "run on":
        assert block.argument in ("Airflow 2", "Airflow 3"), f"{block.id}: run on Airflow 2 or Airflow 3"
        assert block.language in RUNNABLE, f"{block.id}: a {block.language} block cannot run here"
    elif block.directive == "run by":
        assert (REPO / block.argument).is_file(), f"{block.id}: {block.argument} does not exist"
    else:
        assert block.language in RUNNABLE, (
            f"{block.id}: a {block.language} block is not run by this test: mark it with "
            "<!-- not run: <why> --> or <!-- run by: <test file> -->"
        )


# ---------------------------------------------------------------- running them


PYTHON = _selected("python")


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_sample_runs(
    block: Block,
    docs_exports: DocsExports,
    sample_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _skip_other_airflow(block)
    code = _code(block, docs_exports)
    if defines_dag(code):
        folder = tmp_path / "dags"
        folder.mkdir()
        build_dags(block, code, folder)
    else:
        test_dir = tmp_path / "test_tmp_path"
        test_dir.mkdir()
        run_python(block, code, {"tmp_path": test_dir, "monkeypatch": monkeypatch})


BASH = _selected("bash")


@pytest.mark.parametrize("block", BASH, ids=_ids(BASH))
def test_bash_sample_runs(
    block: Block,
    docs_exports: DocsExports,
    sample_env: dict[str, str],
    airflow_cli_home: Path,
    tmp_path: Path,
) -> None:
    _skip_other_airflow(block)
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(airflow_cli_home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_cli_home / 'airflow.db'}",
        AIRFLOW__CORE__DAGS_FOLDER=str(airflow_cli_home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    run_bash(block, _code(block, docs_exports), env=env, cwd=Path.cwd())


DATA = _selected(DATA_LANGUAGES)


@pytest.mark.parametrize("block", DATA, ids=_ids(DATA))
def test_data_block_parses(block: Block) -> None:
    assert check_data(block) is not None


def test_python_samples_that_are_not_run_still_compile() -> None:
    for block in BLOCKS:
        if block.language == "python" and block.directive == "not run":
            compile(block.code, block.id, "exec")
