"""
A real archive of exports, to check and to damage: what the archive check's tests share.

:func:`exported_archive` runs the export example DAG (``example_asana_audit_export``, unchanged) for
:data:`DAYS` consecutive days against the stand-in, each run a real DAG run (``dag.test()``) through the
session's metadata database, into the default layout under a folder of its own. It is built once per
test session; tests copy it (:meth:`Archive.copy`) and damage the copy. The stand-in is stopped once the
archive is written: :meth:`Archive.standin` starts one that serves exactly the same events again.

The rest are the damages themselves, each done the way it happens (a file rewritten with its manifest
updated, an event moved, a gzip stream cut short), so that one damage shows as one kind of problem.

Airflow is imported inside the functions: ``tests/conftest.py`` must set ``AIRFLOW_HOME`` first.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import logging
import shutil
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.evidence import SigningKey
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.dags import copy_example, load_dag, run_dag
from tests.helpers.exports import midnight, serialise

__all__ = [
    "DAYS",
    "EXPORT_DAG_ID",
    "Archive",
    "CliResult",
    "check_not_whole",
    "export_lines",
    "exported_archive",
    "manifest_of",
    "read_export",
    "reexported_days",
    "rewrite_events",
    "rewrite_export",
    "run_verify",
    "write_manifest",
]

#: The export example's DAG id, which its manifests name in ``exported_by``.
EXPORT_DAG_ID = "example_asana_audit_export"
#: Days in the archive: the 7 days before yesterday, oldest first.
DAYS = 7
#: The stand-in's events: a small, fixed, generated set.
SEED, PER_DAY = 7, 60


@dataclass(frozen=True)
class Archive:
    """
    An archive of exports in the default layout.

    :param base: the base path (the folder holding ``workspace_gid=...``).
    :param days: the first instant of each exported day, oldest first.
    :param workspace_gid: the stand-in's workspace.
    """

    base: Path
    days: tuple[datetime, ...]
    workspace_gid: str
    #: For a signed archive: the key that signed it, its public key file, and the seal hashes the
    #: sealing tasks published.
    signing_key: SigningKey | None = None
    public_key: Path | None = None
    seal_hashes: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """The base path as a ``file://`` URI, as a user would give it."""
        return f"file://{self.base}"

    @property
    def first(self) -> datetime:
        """The start of the oldest day."""
        return self.days[0]

    @property
    def end(self) -> datetime:
        """The end of the newest day."""
        return self.days[-1] + timedelta(days=1)

    def day_folder(self, day: datetime) -> Path:
        return self.base / f"workspace_gid={self.workspace_gid}" / f"date={day:%Y-%m-%d}"

    def file(self, day: datetime) -> Path:
        """The export file of a day."""
        end = day + timedelta(days=1)
        return self.day_folder(day) / f"asana_audit_log_{day:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz"

    def manifest(self, day: datetime) -> Path:
        """The manifest of a day's file."""
        path = self.file(day)
        return path.with_name(f"{path.name}.manifest.json")

    def files(self) -> list[Path]:
        """Every export file, oldest first."""
        return [self.file(day) for day in self.days]

    def copy(self, to: Path) -> Archive:
        """A copy of the archive at ``to`` (which must not exist), to damage."""
        shutil.copytree(self.base, to)
        return dataclasses.replace(self, base=to)

    def export(self, fake: FakeAsana, start: datetime, end: datetime | None = None, **kwargs: Any) -> Any:
        """
        Export ``[start, end)`` (default: the day from ``start``) from ``fake`` into the archive with the
        export operator, as the export DAG's task does (without ``allow_event_removal``); return its XCom.

        :param kwargs: more arguments of the operator (``destination``, filters, ...).
        """
        from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

        kwargs.setdefault("base_path", self.uri)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", fake.connection_json())
            operator = AsanaAuditLogExportOperator(
                task_id="export",
                start_at=start,
                end_at=end or start + timedelta(days=1),
                settle_period=timedelta(0),
                **kwargs,
            )
            return operator.execute(context={})

    def standin(self) -> FakeAsana:
        """A stand-in (not started) that serves exactly the events the archive was exported from."""
        return FakeAsana(seed=SEED, events_per_day=PER_DAY, start=self.first, end=self.end)


def exported_archive(dags_folder: Path, base: Path, *, signing_key: SigningKey | None = None) -> Archive:
    """
    Export the archive at ``base`` (which must not exist) with the example DAG, for :data:`DAYS` days.

    The session fixtures ``archive`` and ``signed_archive`` (``tests/conftest.py``) call it once each;
    tests damage copies.

    :param dags_folder: the session's DAGs folder (see ``tests/conftest.py``), where the example goes.
    :param signing_key: sign the exports and seal the archive after each, as the example DAG does when
        ``ASANA_AUDIT_SIGNING_CONN_ID`` names a connection holding the key; the public key is written
        beside ``base``.
    """
    days = tuple(midnight(DAYS + 1 - n) for n in range(DAYS))
    archive = Archive(base=base, days=days, workspace_gid="")
    path = copy_example(dags_folder, f"{EXPORT_DAG_ID}.py")
    seal_hashes: list[str] = []
    with archive.standin() as fake, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", fake.connection_json())
        patch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{base}")
        patch.setenv("ASANA_AUDIT_SETTLE_MINUTES", "0")
        patch.setenv("ASANA_AUDIT_EXPORT_START", f"{days[0]:%Y-%m-%d}")
        if signing_key is not None:
            connection = {"conn_type": "generic", "password": signing_key.export_private_pem()}
            patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_SIGNING", json.dumps(connection))
            patch.setenv("ASANA_AUDIT_SIGNING_CONN_ID", "asana_audit_signing")
        dag = load_dag(path, EXPORT_DAG_ID)
        for day in days:
            # A manual run's data interval is the one that ends at its logical date: the day before it.
            run = run_dag(dag, day + timedelta(days=1))
            assert run.state == "success", f"the export of {day:%Y-%m-%d} failed: {run.task_states}"
            if signing_key is not None:
                (seal,) = run.xcom("seal_archive")["seals"]
                seal_hashes.append(seal["seal_sha256"])
        workspace_gid = fake.workspace_gid
        for day in days:
            assert fake.ground_truth(day, day + timedelta(days=1)), f"no events on {day:%Y-%m-%d}"
    public_key = None
    if signing_key is not None:
        public_key = base.parent / "evidence.pub"
        public_key.write_text(signing_key.public_key.pem)
    archive = Archive(
        base=base,
        days=days,
        workspace_gid=workspace_gid,
        signing_key=signing_key,
        public_key=public_key,
        seal_hashes=tuple(seal_hashes),
    )
    written = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    expected = [*archive.files(), *(archive.manifest(day) for day in days)]
    if signing_key is not None:
        expected += [file.with_name(file.name + ".record.json") for file in archive.files()]
        assert sum("/_records/" in name for name in written) == DAYS, written
        assert sum("/_seals/" in name for name in written) == DAYS, written
        written = [name for name in written if "/_records/" not in name and "/_seals/" not in name]
    assert written == sorted(str(p.relative_to(base)) for p in expected), written
    return archive


# ------------------------------------------------------------------------------------ damage


def manifest_of(file: Path) -> dict[str, Any]:
    """The manifest beside an export file."""
    manifest: dict[str, Any] = json.loads(file.with_name(f"{file.name}.manifest.json").read_text())
    return manifest


def write_manifest(file: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest beside an export file, as the operator writes it."""
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    file.with_name(f"{file.name}.manifest.json").write_text(text, encoding="utf-8")


def export_lines(file: Path) -> list[bytes]:
    """The lines of an export file, as stored (without their newlines)."""
    return gzip.decompress(file.read_bytes()).splitlines()


def rewrite_export(file: Path, lines: list[bytes], *, events: int | None = None) -> None:
    """
    Write ``lines`` to an export file as the operator would (gzip level 6, no name, mtime 0), and make
    its manifest describe the new bytes, so that nothing but the lines themselves is wrong.

    :param events: the manifest's ``events``; default the number of lines.
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        gz.write(b"".join(line + b"\n" for line in lines))
    data = buffer.getvalue()
    file.write_bytes(data)
    manifest = manifest_of(file)
    manifest.update(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        events=len(lines) if events is None else events,
    )
    write_manifest(file, manifest)


def rewrite_events(file: Path, events: list[dict[str, Any]]) -> None:
    """:func:`rewrite_export` with events, serialised exactly as the operator serialises them."""
    rewrite_export(file, gzip.decompress(serialise(events, compressed=True)).splitlines())


def read_export(file: Path) -> list[dict[str, Any]]:
    """The events of an export file."""
    return [json.loads(line) for line in export_lines(file)]


# ------------------------------------------------------------------------------------ the command


@dataclass(frozen=True)
class CliResult:
    """What ``python -m airflow_provider_asana_audit.verify`` printed and returned."""

    code: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        """
        The JSON report it wrote to stdout (``--json -``).

        In this process, Airflow 3's structlog lines (the Amazon provider's "credentials retrieved")
        reach the captured stdout ahead of the report; the command itself points descriptor 1 at standard
        error, so that a real stdout holds the report alone.
        """
        start = self.stdout.find("{\n")
        document: dict[str, Any] = json.loads(self.stdout[max(start, 0) :])
        return document


def run_verify(*args: str, main: Callable[[list[str]], int] | None = None) -> CliResult:
    """
    Run the command's ``main`` in this process (importing Airflow again per run would take seconds)
    with ``args``, and return its exit status (2 for a usage error, as ``argparse`` exits) and output.
    """
    if main is None:
        from airflow_provider_asana_audit.verify import main as verify_main

        main = verify_main
    out, err = io.StringIO(), io.StringIO()
    # The command's progress lines are logged; in a test process Airflow 2's log handlers write to
    # whatever sys.stdout is at the time, which would mix them into the JSON report.
    logging.disable(logging.INFO)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    finally:
        logging.disable(logging.NOTSET)
    return CliResult(code=code, stdout=out.getvalue(), stderr=err.getvalue())


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def reexported_days(report: dict[str, Any]) -> set[datetime]:
    """Every day the report's re-export ranges cover."""
    days: set[datetime] = set()
    for item in report["reexport"]:
        day, end = _instant(item["start_at"]), _instant(item["end_at"])
        while day < end:
            days.add(day)
            day += timedelta(days=1)
    return days


def check_not_whole(result: CliResult, kinds: dict[str, int]) -> dict[str, Any]:
    """The command said, in its exit status, its JSON report and its summary, exactly these problems."""
    assert result.code == 1, result.stderr
    report = result.report
    assert report["whole"] is False
    assert report["problem_counts"] == kinds, result.stderr
    assert sorted(problem["kind"] for problem in report["problems"]) == sorted(
        kind for kind, count in kinds.items() for _ in range(count)
    )
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    total = sum(kinds.values())
    assert f"NOT WHOLE: {total} {'problem' if total == 1 else 'problems'} ({counts})" in result.stderr
    for problem in report["problems"]:
        assert f"  {problem['kind']}: {problem['message']}" in result.stderr
    for item in report["reexport"]:
        assert item["dag_id"] == EXPORT_DAG_ID
        assert item["command"] in result.stderr
    return report
