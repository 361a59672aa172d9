"""
docs/archive.md and the README's sample of the archive check stay true to the check and its command.

Every problem kind and every option of ``python -m airflow_provider_asana_audit.verify`` is explained;
the JSON report in the page has exactly the keys of a real one; the sample outputs (blocks that start
with ``$ python -m airflow_provider_asana_audit.verify``) have the shape of what the command prints for
the example DAGs' archive (``tests/docs/conftest.py``), whole and damaged the way the samples say; and
the recipe that reads the lag of late events from the manifests prints the right bounds.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit import backfill
from airflow_provider_asana_audit.evidence import EVIDENCE_PROBLEM_KINDS
from airflow_provider_asana_audit.verify import PROBLEM_KINDS, main, verify_archive
from tests.docs.conftest import LATE_EVENTS, DocsArchive
from tests.docs.markdown import REPO, Block, blocks

THIS_FILE = "tests/docs/test_archive.py"
PAGE = Path("docs/archive.md")
#: What a sample of the command's output starts with.
COMMAND = "$ python -m airflow_provider_asana_audit.verify "
#: The base path the samples show.
SAMPLE_BASE = "/data/asana"


def _page() -> str:
    return (REPO / PAGE).read_text(encoding="utf-8")


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- what the page explains


def test_every_problem_kind_is_explained() -> None:
    rows = {line.split("|")[1].strip() for line in _page().splitlines() if line.startswith("| `")}
    # The evidence kinds are explained in docs/evidence.md (tests/evidence/test_docs.py).
    kinds = [kind for kind in PROBLEM_KINDS if kind not in EVIDENCE_PROBLEM_KINDS]
    missing = [kind for kind in kinds if f"`{kind}`" not in rows]
    assert not missing, f"{PAGE}: add a row to the problem table for {missing}"
    assert [kind for kind in EVIDENCE_PROBLEM_KINDS if f"`{kind}`" not in _page()] == []


def test_every_option_of_the_command_is_explained() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    options = sorted(set(re.findall(r"(--[a-z][a-z-]+)", out.getvalue())) - {"--help"})
    assert options
    page = _page()
    missing = [option for option in options if f"| `{option}" not in page]
    assert not missing, f"{PAGE} does not explain {missing}"


def test_the_example_dag_settings_are_explained() -> None:
    source = (REPO / "example_dags" / "example_asana_audit_archive.py").read_text(encoding="utf-8")
    settings = sorted(set(re.findall(r'os\.environ\.get\("(\w+)"', source)))
    assert settings
    page = _page()
    missing = [name for name in settings if f"| `{name}` |" not in page]
    assert not missing, f"{PAGE} does not explain the example DAG's settings {missing}"


# ---------------------------------------------------------------- the JSON report


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document; lists stand for their items (``problems[].kind``)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            # problem_counts is keyed by problem kind: its keys are values, not fields.
            if key != "problem_counts":
                found |= _keys(item, path)
    elif isinstance(value, list):
        for item in value:
            found |= _keys(item, f"{prefix}[]")
    return found


def _damaged_copy(archive: DocsArchive, to: Path) -> Path:
    """The damage of the samples: one day's file and manifest deleted, another day's file cut in half."""
    shutil.copytree(archive.base, to)
    deleted, cut = (
        Path(str(archive.file(day)).replace(str(archive.base), str(to))) for day in archive.days[1:3]
    )
    deleted.unlink()
    deleted.with_name(f"{deleted.name}.manifest.json").unlink()
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return to


def test_the_json_report_in_the_page_has_the_keys_of_a_real_one(
    docs_archive: DocsArchive, tmp_path: Path
) -> None:
    (block,) = [b for b in blocks(PAGE) if b.language == "json" and '"problem_counts"' in b.code]
    documented = json.loads(block.code)
    base = _damaged_copy(docs_archive, tmp_path / "asana")
    report = verify_archive(f"file://{base}", since=docs_archive.start, until=docs_archive.end)
    real = report.to_json()
    assert not real["whole"]
    assert real["problems"]
    assert real["late_events"]["examples"]
    assert _keys(documented) == _keys(real)
    table = _page().split("## The JSON report", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in real if f"`{key}`" not in table]
    assert not missing, f"{PAGE}: the JSON report's table does not explain {missing}"


# ---------------------------------------------------------------- the sample outputs


def _shape(line: str) -> str:
    """A line of the command's output with its values (instants, digests, numbers) made generic."""
    line = re.sub(r"[0-9a-f]{64}|[0-9a-f]{6,}…", "<sha256>", line)
    line = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z", "<instant>", line)
    line = re.sub(r"\d{8}T\d{6}Z", "<stamp>", line)
    line = re.sub(r"\d{4}-\d{2}-\d{2}", "<date>", line)
    line = re.sub(r"\b\d+[dhms](?: \d+[dhms])*\b", "<duration>", line)
    return re.sub(r"\d+(?:\.\d+)?", "<n>", line)


def _samples() -> list[Block]:
    return [
        block
        for path in (Path("README.md"), PAGE)
        for block in blocks(path)
        if block.language == "text" and block.code.startswith(COMMAND)
    ]


def _run(*args: str) -> str:
    """The command's summary, with the real base path shown as the samples'."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(args)) in (0, 1)
    return out.getvalue().replace(args[0], SAMPLE_BASE)


def test_there_are_samples_of_a_whole_and_a_damaged_archive() -> None:
    codes = [block.code for block in _samples()]
    assert any("\nWHOLE: " in code for code in codes)
    assert any("\nNOT WHOLE: " in code and "\nRe-export:\n" in code for code in codes)
    assert any("\n  late events: " in code for code in codes)


def test_the_samples_have_the_shape_of_the_real_output(
    docs_archive: DocsArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bounds = ("--since", f"{docs_archive.start:%Y-%m-%d}", "--until", f"{docs_archive.end:%Y-%m-%d}")
    damaged_base = _damaged_copy(docs_archive, tmp_path / "asana")
    whole = _run(str(docs_archive.base), *bounds)
    assert "\nWHOLE: " in whole
    real = {_shape(line) for line in whole.splitlines()}
    # The samples show Airflow 3's backfill command; on Airflow 2 the command prints Airflow 2's.
    for airflow_3 in (True, False):
        monkeypatch.setattr(backfill, "AIRFLOW_V_3_0_PLUS", airflow_3)
        damaged = _run(str(damaged_base), *bounds)
        assert "\nNOT WHOLE: " in damaged
        real |= {_shape(line) for line in damaged.splitlines()}
    for block in _samples():
        for number, line in enumerate(block.code.splitlines()[1:], start=block.line + 2):
            assert _shape(line) in real, (
                f"{block.path}:{number} is not what the command prints now; run it again and copy its "
                f"output:\n  {line}\n  shapes it prints:\n  " + "\n  ".join(sorted(real))
            )


# ---------------------------------------------------------------- the lag recipe


def _lag_recipe() -> Block:
    (block,) = [b for b in blocks(PAGE) if b.directive == "run by" and b.argument == THIS_FILE]
    assert block.language == "python"
    return block


def test_the_lag_recipe_prints_the_bounds_of_each_late_event(
    docs_archive: DocsArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{docs_archive.base}")
    block = _lag_recipe()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.code, block.id, "exec"), {"__name__": "tests.docs.sample_archive_lag"})

    (change,) = docs_archive.reexport_manifest["changes"]
    end = docs_archive.start + timedelta(days=1)
    after = _instant(change["previous_exported_at"]) - end
    before = _instant(change["detected_at"]) - end
    assert out.getvalue() == (
        f"{docs_archive.start:%Y-%m-%d}: {LATE_EVENTS} events captured late, "
        f"between {after} and {before} after the end of the day\n"
    )
    assert timedelta(0) < after < before
