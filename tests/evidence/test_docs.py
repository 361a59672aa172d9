"""
docs/evidence.md stays true: its samples run (the ones marked ``run by: tests/evidence/test_docs.py``),
every problem kind of the evidence package is explained in it (its messages are in
docs/troubleshooting.md, checked by tests/docs/test_troubleshooting.py), and the package's
``docs/evidence.md#...`` references point at its headings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_asana_audit.evidence import EVIDENCE_PROBLEM_KINDS, PublicKey, SigningKey
from tests.docs.markdown import REPO, Block, blocks
from tests.docs.test_links import anchors
from tests.evidence.archive import DAY0, EvidenceArchive, events_of

PAGE = Path("docs/evidence.md")
THIS = "tests/evidence/test_docs.py"
BLOCKS = [block for block in blocks(PAGE) if block.directive == "run by" and block.argument == THIS]
PACKAGE = REPO / "airflow_provider_asana_audit" / "evidence"


def _block(language: str, needle: str) -> Block:
    (found,) = [block for block in BLOCKS if block.language == language and needle in block.code]
    return found


def _run_python(block: Block, base: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = block.code.replace("/data/asana", str(base))
    exec(compile(code, f"{PAGE}:{block.line}", "exec"), {"__name__": "__sample__"})
    return capsys.readouterr().out


def test_the_page_has_the_samples_this_file_runs() -> None:
    assert sorted(block.language for block in BLOCKS) == ["bash", "python", "python"]


def test_the_make_key_sample_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _block("bash", "make-key").code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = SigningKey.from_pem(done.stdout)
    assert PublicKey.from_file(tmp_path / "evidence-2026.pub") == key.public_key
    assert "Airflow connection's password" in done.stderr


def test_the_sealing_and_auditing_samples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = EvidenceArchive(tmp_path / "asana")
    for day in range(3):
        archive.export(day, events_of(day, 4), exported_at=DAY0 + timedelta(days=day + 1))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "evidence.key").write_text(archive.key.export_private_pem())
    (cwd / "evidence-2025.pub").write_text(SigningKey.generate().public_key.pem)  # a rotated-out key
    (cwd / "evidence-2026.pub").write_text(archive.key.public_key.pem)

    sealed = _run_python(_block("python", "make_seal("), archive.base, capsys)
    match = re.fullmatch(r"Sealed 3 intervals; publish this seal hash: ([0-9a-f]{64})\n", sealed)
    assert match is not None, sealed
    (cwd / "published-seal-hashes.txt").write_text(match[1] + "\n")
    audit = _block("python", "check_evidence(")
    assert _run_python(audit, archive.base, capsys) == "INTACT\n"

    shutil.rmtree((archive.base / archive.file(1)).parent)
    shutil.rmtree(archive.base / "workspace_gid=1200000000000001" / "_seals")
    found = _run_python(audit, archive.base, capsys).splitlines()
    assert found[-1] == "NOT INTACT: 2 problems"
    assert [line.split(":")[0] for line in found[:-1]] == ["seal_unpublished_mismatch", "seal_missing"]


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", (REPO / path).read_text(encoding="utf-8").replace("`", ""))


def test_every_problem_kind_is_explained() -> None:
    page = _text(PAGE)
    assert [kind for kind in EVIDENCE_PROBLEM_KINDS if f"| {kind} |" not in page] == []


def test_the_package_points_at_headings_of_the_page() -> None:
    targets = {
        anchor
        for module in PACKAGE.glob("*.py")
        for anchor in re.findall(r"docs/evidence\.md#([\w-]+)", module.read_text(encoding="utf-8"))
    }
    assert targets
    assert targets <= anchors(PAGE)
