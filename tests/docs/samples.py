"""
Run the documentation's code blocks: Python in this process, DAG files through a ``DagBag``, shell
scripts in ``bash``, data blocks through their parsers. See ``tests/docs/markdown.py`` for the blocks
and their directives, and ``docs/development.md`` for what a sample may rely on.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.docs.markdown import Block
from tests.helpers.dags import load_dagbag

__all__ = [
    "DATA_LANGUAGES",
    "NOT_CODE",
    "RUNNABLE",
    "build_dags",
    "check_data",
    "defines_dag",
    "run_bash",
    "run_python",
    "substitute",
]

#: Languages whose blocks the generic test runs (Python, shell) or parses (data).
DATA_LANGUAGES = frozenset({"json", "yaml"})
RUNNABLE = frozenset({"python", "bash"}) | DATA_LANGUAGES
#: Output and layouts, not code: never run, and no directive needed.
NOT_CODE = frozenset({"text"})
#: What the samples write for the stand-in's address and for the directory of exports.
STANDIN_ADDRESS = "127.0.0.1:8765"
EXPORT_DIRECTORY = "/data/asana"
#: Seconds a shell sample may take; the slowest runs two Airflow CLI commands.
BASH_TIMEOUT = 300

_DAG = re.compile(r"\bDAG\(|@dag\b")


def substitute(code: str, *, standin_address: str, export_directory: Path) -> str:
    """The block's code with the stand-in's and the exports' placeholders made real."""
    return code.replace(STANDIN_ADDRESS, standin_address).replace(EXPORT_DIRECTORY, str(export_directory))


def defines_dag(code: str) -> bool:
    """Whether the sample defines a DAG (and so is built by a ``DagBag`` rather than executed)."""
    return _DAG.search(code) is not None


def build_dags(block: Block, code: str, folder: Path) -> list[str]:
    """Parse the sample as a DAG file, as Airflow's DAG processor would; return the ids of its DAGs."""
    path = folder / f"docs_sample_{block.path.stem.replace('-', '_')}_{block.line}.py"
    path.write_text(code, encoding="utf-8")
    bag = load_dagbag(path)
    assert not bag.import_errors, f"{block.id} does not import: {bag.import_errors}"
    dag_ids = sorted(bag.dags)
    assert dag_ids, f"{block.id} defines no DAG"
    return dag_ids


def run_python(block: Block, code: str, fixtures: Mapping[str, Any]) -> dict[str, Any]:
    """
    Execute the sample in this process, then call each ``test_*`` function it defines with the
    fixtures its parameters name. Warnings attributed to the sample fail the test (it runs as a
    module of ``tests``).
    """
    namespace: dict[str, Any] = {"__name__": f"tests.docs.sample_{block.path.stem.replace('-', '_')}"}
    exec(compile(code, block.id, "exec"), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.isfunction(value):
            arguments = {parameter: fixtures[parameter] for parameter in inspect.signature(value).parameters}
            value(**arguments)
    return namespace


def run_bash(
    block: Block, code: str, *, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run the sample with ``bash -euo pipefail``, this venv's ``python`` and ``airflow`` first on PATH."""
    environment = dict(env)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=BASH_TIMEOUT,
        check=False,
    )
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"{block.id} exited with {result.returncode}\n{output}"
    return result


def check_data(block: Block) -> Any:
    """Parse a ``json`` or ``yaml`` block; return what it holds."""
    if block.language == "json":
        return json.loads(block.code)
    return yaml.safe_load(block.code)
