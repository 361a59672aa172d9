"""
The archive check as a task (``AsanaAuditLogVerifyOperator``), in real DAG runs and called directly.

The archive is the one the export example DAG wrote for 7 days (``tests/helpers/archive.py``); each test
checks it or a damaged copy. In a DAG run the operator's arguments are templated from the run, its
XCom says what it found, and a damaged archive fails the task at once, without its retries: the
archive will not mend itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.exceptions import AsanaAuditLogArchiveError, AsanaAuditLogConfigError
from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.archive import EXPORT_DAG_ID, Archive, manifest_of
from tests.helpers.dags import DagRunResult, load_dag, run_dag, write_dag

_DAG_ID = "asana_audit_verify_under_test"
_TASK_ID = "verify"
_DAG_SOURCE = f'''\
"""The archive check, configured by ASANA_VERIFY_TEST_OPTIONS (JSON); written by tests/operators."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG, CronDataIntervalTimetable
else:
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="{_DAG_ID}",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2021, 10, 8, tzinfo=timezone.utc),
    catchup=False,
):
    # Retries, so that a failure without them shows that the operator refused them.
    AsanaAuditLogVerifyOperator(
        task_id="{_TASK_ID}",
        retries=2,
        retry_delay=timedelta(minutes=5),
        **json.loads(os.environ.get("ASANA_VERIFY_TEST_OPTIONS") or "{{}}"),
    )
'''
DAY = timedelta(days=1)
RunVerify = Callable[..., DagRunResult]


@pytest.fixture
def run_verify_dag(dags_folder: Path, archive: Archive, monkeypatch: pytest.MonkeyPatch) -> RunVerify:
    """
    Run the DAG under test once for the archive's last day: ``run_verify_dag(**options)``.

    The run's logical date is the end of the archive's last day (a manual run's data interval ends
    there); ``options`` are the operator's arguments.
    """
    path = write_dag(dags_folder, _DAG_ID, _DAG_SOURCE)

    def run(**options: Any) -> DagRunResult:
        monkeypatch.setenv("ASANA_VERIFY_TEST_OPTIONS", json.dumps(options))
        return run_dag(load_dag(path, _DAG_ID), archive.end)

    return run


def backfill(day: Any, dag_id: str = EXPORT_DAG_ID) -> str:
    """The command that re-runs the export DAG's run of one day."""
    if AIRFLOW_V_3_0_PLUS:
        return (
            f"airflow backfill create --dag-id {dag_id} --from-date {day:%Y-%m-%d} --to-date {day:%Y-%m-%d} "
            "--reprocess-behavior completed"
        )
    return (
        f"airflow dags backfill --reset-dagruns --yes --start-date {day:%Y-%m-%d} --end-date {day:%Y-%m-%d} "
        f"{dag_id}"
    )


def _delete_day(archive: Archive, day: Any) -> None:
    archive.file(day).unlink()
    archive.manifest(day).unlink()


# ------------------------------------------------------------------------------------ in DAG runs


def test_in_a_dag_run_a_whole_archive_passes_with_templated_bounds_and_report(
    run_verify_dag: RunVerify, archive: Archive, tmp_path: Path
) -> None:
    events = sum(manifest_of(path)["events"] for path in archive.files())

    run = run_verify_dag(
        base_path=archive.uri,
        since="{{ macros.ds_add(ds, -7) }}",
        until="{{ data_interval_end }}",
        report_path=f"{tmp_path}/reports/{{{{ ds }}}}.json",
        html_report_path=f"{tmp_path}/reports/{{{{ ds }}}}.html",
    )

    assert run.task_state == "success"
    report_file = tmp_path / "reports" / f"{archive.end:%Y-%m-%d}.json"
    html_file = report_file.with_suffix(".html")
    assert run.xcom(_TASK_ID) == {
        "whole": True,
        "files": 7,
        "events": events,
        "problems": {},
        "reexport": [],
        "late_events": {
            "changed_reexports": 0,
            "added_events": 0,
            "removed_events": 0,
            "repairs": 0,
            "captured_after_end_at_least_seconds": None,
        },
        "evidence": None,
        "object_lock": None,
        "report": str(report_file),
        "html_report": str(html_file),
    }
    page = html_file.read_text(encoding="utf-8")
    assert page.count('role="gridcell"') >= len(archive.days)
    assert "NOT WHOLE" not in page
    report = json.loads(report_file.read_text())
    assert (report["whole"], report["since"], report["until"]) == (
        True,
        f"{archive.first:%Y-%m-%d}T00:00:00.000Z",
        f"{archive.end:%Y-%m-%d}T00:00:00.000Z",
    )


def test_in_a_dag_run_a_damaged_archive_fails_the_task_without_retries(
    run_verify_dag: RunVerify, damaged: Archive, tmp_path: Path
) -> None:
    _delete_day(damaged, damaged.days[3])
    report_file = tmp_path / "report.json"

    run = run_verify_dag(base_path=damaged.uri, report_path=str(report_file))

    assert run.task_state == "failed"  # not up_for_retry: its 2 retries were refused
    report = json.loads(report_file.read_text())  # written before the task failed
    assert (report["whole"], report["problem_counts"]) == (False, {"gap": 1})
    assert [item["command"] for item in report["reexport"]] == [backfill(damaged.days[3])]


def test_in_a_dag_run_a_damaged_archive_can_be_only_reported(
    run_verify_dag: RunVerify, damaged: Archive
) -> None:
    _delete_day(damaged, damaged.days[3])
    damaged.manifest(damaged.days[5]).unlink()

    run = run_verify_dag(base_path=damaged.uri, fail_when_not_whole=False)

    assert run.task_state == "success"
    found = run.xcom(_TASK_ID)
    assert (found["whole"], found["files"], found["problems"], found["report"]) == (
        False,
        6,
        {"gap": 1, "missing_manifest": 1},
        None,
    )
    assert found["reexport"] == [backfill(damaged.days[3]), backfill(damaged.days[5])]


# ------------------------------------------------------------------------------------ called directly


def _execute(**kwargs: Any) -> dict[str, Any]:
    context: Any = {}
    result: dict[str, Any] = AsanaAuditLogVerifyOperator(task_id=_TASK_ID, **kwargs).execute(context)
    return result


def test_the_failure_lists_the_problems_and_the_backfills_that_mend_them(damaged: Archive) -> None:
    _delete_day(damaged, damaged.days[1])
    damaged.file(damaged.days[4]).write_bytes(b"\x1f\x8b")  # truncated to its gzip magic

    with pytest.raises(AsanaAuditLogArchiveError) as raised:
        _execute(base_path=damaged.uri, export_dag_id="my_export")

    assert str(raised.value) == (
        f"The archive under {damaged.uri} is not whole: 1 gap, 1 manifest_mismatch, 1 unreadable_file (see "
        f"the task log for each problem). Re-export with: {backfill(damaged.days[1], 'my_export')}; "
        f"{backfill(damaged.days[4], 'my_export')}."
    )


def test_the_base_path_defaults_to_the_config_option(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ASANA_AUDIT_LOG__BASE_PATH", archive.uri)

    assert _execute()["files"] == 7


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"base_path": "exports"}, "base_path 'exports' is a relative path"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "must be before until"),
        ({"since": "last week"}, "since='last week' is not an ISO 8601 date-time"),
        ({"report_path": "report.json"}, "destination 'report.json' is a relative path"),
    ],
    ids=["relative-base", "reversed", "since-unparsable", "relative-report"],
)
def test_bad_arguments_fail_without_retries_before_anything_is_read(
    kwargs: dict[str, Any], says: str, tmp_path: Path
) -> None:
    kwargs.setdefault("base_path", str(tmp_path))

    with pytest.raises(AsanaAuditLogConfigError, match=says.replace("(", r"\(")):
        _execute(**kwargs)
