"""
The archive check as a task: is every interval of the archive there and intact?

The checking itself is :func:`~airflow_provider_asana_audit.verify.verify_archive`'s; this operator owns
the templated arguments, where the JSON report goes, the XCom summary and whether the task fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_asana_audit.exceptions import AsanaAuditLogArchiveError
from airflow_provider_asana_audit.storage import default_base, resolve_destination, write_atomically
from airflow_provider_asana_audit.utils import rendered
from airflow_provider_asana_audit.verify import ArchiveReport, parse_bound, verify_archive

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["AsanaAuditLogVerifyOperator"]


class AsanaAuditLogVerifyOperator(BaseOperator):
    """
    Check an archive of exports and fail when it is not whole, saying what to re-export.

    Reads the default layout under ``base_path`` on any Airflow object storage and checks every workspace
    and set of filters for gaps and overlaps between files, files without a manifest and manifests
    without a file, manifests whose ``sha256``, ``bytes`` or ``events`` do not match their file, lines that
    are not JSON audit events, events outside their file's interval, gids in more than one file, and
    staging objects left by export attempts that did not finish. Memory stays flat: files are streamed
    and gids go to a temporary database on the worker's disk (about 50 bytes per event). Progress is
    logged every 5 seconds, the summary at the end.

    When the archive is not whole the task fails (without retries: the archive will not mend itself)
    with the problems and the backfill commands that re-export what is damaged, unless
    ``fail_when_not_whole=False``. The JSON report is written to ``report_path`` when given.

    **XCom.** ``{"whole", "files", "events", "problems" (counts by kind), "reexport" (the commands),
    "late_events" (added and removed counts, and how long after their interval Asana captured them at
    least), "report" (the report's path or None)}``.

    :param base_path: the root of the default layout; default the config option
        ``[asana_audit_log] base_path``, else ``file://{AIRFLOW_HOME}/asana_audit_log``. (templated)
    :param since: check for gaps from this date or instant on, e.g. ``"{{ macros.ds_add(ds, -89) }}"``;
        default the first export. (templated)
    :param until: check for gaps up to this date or instant, e.g. ``"{{ data_interval_start }}"``; default
        the end of the last export. (templated)
    :param storage_conn_id: the Airflow connection of the storage, if it needs one (e.g. ``aws_default``).
        (templated)
    :param export_dag_id: the export DAG to name in the re-export commands; default the DAG named in the
        manifests. (templated)
    :param report_path: where to write the JSON report, a path or URI; default nowhere. (templated)
    :param fail_when_not_whole: fail the task when a problem is found (default); otherwise only log it.
    """

    template_fields: Sequence[str] = (
        "base_path",
        "since",
        "until",
        "storage_conn_id",
        "export_dag_id",
        "report_path",
    )
    ui_color = "#f06a6a"

    def __init__(
        self,
        *,
        base_path: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        storage_conn_id: str | None = None,
        export_dag_id: str | None = None,
        report_path: str | ObjectStoragePath | None = None,
        fail_when_not_whole: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_path = base_path
        self.since = since
        self.until = until
        self.storage_conn_id = storage_conn_id
        self.export_dag_id = export_dag_id
        self.report_path = report_path
        self.fail_when_not_whole = fail_when_not_whole

    def execute(self, context: Context) -> dict[str, Any]:
        since, until = (
            None if rendered(value) is None else parse_bound(rendered(value), name=name)
            for name, value in (("since", self.since), ("until", self.until))
        )
        storage_conn_id = rendered(self.storage_conn_id)
        report_target = (
            None
            if rendered(self.report_path) is None
            else resolve_destination(rendered(self.report_path), conn_id=storage_conn_id)
        )
        base = default_base(rendered(self.base_path))
        self.log.info("Checking the archive of Asana audit log exports under %s", base)
        report = verify_archive(
            base,
            since=since,
            until=until,
            conn_id=storage_conn_id,
            dag_id=rendered(self.export_dag_id),
            log=self.log,
        )
        summary = report.summary()
        for line in summary.splitlines():
            self.log.info("%s", line)
        if report_target is not None:
            body = (json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            write_atomically(report_target, lambda raw: raw.write(body), log=self.log)
            self.log.info("Wrote the JSON report to %s", report_target)
        if not report.whole:
            if self.fail_when_not_whole:
                raise AsanaAuditLogArchiveError(_failure(report))
            self.log.warning("The archive is not whole: %s", _failure(report))
        return _xcom(report, report_target)


def _failure(report: ArchiveReport) -> str:
    """The task's failure message: the problems by kind, then what to run."""
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(report.counts().items()))
    commands = [item.command for item in report.reexports if item.command]
    lost = [item for item in report.reexports if item.command is None]
    message = f"The archive under {report.base} is not whole: {counts} (see the task log for each problem)."
    if commands:
        message += " Re-export with: " + "; ".join(commands) + "."
    if lost:
        message += (
            f" {len(lost)} damaged ranges are older than 90 days, and Asana no longer holds their events: "
            "restore them from a backup."
        )
    return message


def _xcom(report: ArchiveReport, report_target: ObjectStoragePath | None) -> dict[str, Any]:
    late = report.late_events.to_json()
    return {
        "whole": report.whole,
        "files": report.files,
        "events": report.events,
        "problems": report.counts(),
        "reexport": [item.command for item in report.reexports if item.command],
        "late_events": {key: value for key, value in late.items() if key != "examples"},
        "report": str(report_target) if report_target is not None else None,
    }
