"""
The archive check as a task. The checking is :func:`~airflow_provider_asana_audit.verify.verify_archive`'s;
the operator owns the templated arguments, where the JSON report goes, the XCom and whether the task fails.

.. seealso:: docs/archive.md#as-a-task and docs/operators.md
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_asana_audit.evidence.keys import Keyring
from airflow_provider_asana_audit.exceptions import AsanaAuditLogArchiveError, AsanaAuditLogConfigError
from airflow_provider_asana_audit.health import archive_health, render_html
from airflow_provider_asana_audit.operators.seal import public_keys as load_public_keys
from airflow_provider_asana_audit.rules import RETENTION
from airflow_provider_asana_audit.storage import atomic_write, default_base, resolve_destination
from airflow_provider_asana_audit.utils import rendered
from airflow_provider_asana_audit.verify import ArchiveReport, verify_archive
from airflow_provider_asana_audit.verify.check import parse_bound
from airflow_provider_asana_audit.verify.report import counted

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["AsanaAuditLogVerifyOperator"]


class AsanaAuditLogVerifyOperator(BaseOperator):
    """
    Check an archive of exports and fail when it is not whole, saying what to re-export.

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
    :param html_report_path: where to write the report as one self-contained HTML page (the calendar,
        the events per day and the problems), a path or URI; default nowhere. (templated)
    :param fail_when_not_whole: fail the task when a problem is found (default; without retries, since the
        archive will not mend itself); otherwise only log it.
    :param public_keys: check the signed records and seals with these public keys (PEM text or paths of
        PEM files): every key the archive has used. Default: the evidence is not checked. (templated)
    :param published_seal_hashes: seal hashes published outside the archive, each of which must be in it;
        needs ``public_keys``. (templated)

    .. seealso:: docs/operators.md#checking-the-archive-asanaauditlogverifyoperator (parameters, XCom)
        and docs/archive.md (what is checked)
    """

    template_fields: Sequence[str] = (
        "base_path",
        "since",
        "until",
        "storage_conn_id",
        "export_dag_id",
        "report_path",
        "html_report_path",
        "public_keys",
        "published_seal_hashes",
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
        html_report_path: str | ObjectStoragePath | None = None,
        fail_when_not_whole: bool = True,
        public_keys: Sequence[str] = (),
        published_seal_hashes: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_path = base_path
        self.since = since
        self.until = until
        self.storage_conn_id = storage_conn_id
        self.export_dag_id = export_dag_id
        self.report_path = report_path
        self.html_report_path = html_report_path
        self.fail_when_not_whole = fail_when_not_whole
        self.public_keys = public_keys
        self.published_seal_hashes = published_seal_hashes

    def execute(self, context: Context) -> dict[str, Any]:
        since, until = (
            None if rendered(value) is None else parse_bound(rendered(value), name=name)
            for name, value in (("since", self.since), ("until", self.until))
        )
        storage_conn_id = rendered(self.storage_conn_id)
        report_target, html_target = (
            None if rendered(path) is None else resolve_destination(rendered(path), conn_id=storage_conn_id)
            for path in (self.report_path, self.html_report_path)
        )
        keys = load_public_keys(rendered(self.public_keys))
        published = _hashes(rendered(self.published_seal_hashes))
        if published and not keys:
            raise AsanaAuditLogConfigError(
                "published_seal_hashes are checked against the signed seals: give public_keys too"
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
            keyring=Keyring(keys) if keys else None,
            published_seal_hashes=published,
        )
        summary = report.summary()
        for line in summary.splitlines():
            self.log.info("%s", line)
        if report_target is not None:
            body = (json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
            self._write(report_target, body, what="the JSON report")
        if html_target is not None:
            page = render_html([archive_health(base, conn_id=storage_conn_id, report=report.to_json())])
            self._write(html_target, page.encode("utf-8"), what="the HTML report")
        if not report.whole:
            if self.fail_when_not_whole:
                raise AsanaAuditLogArchiveError(_failure(report))
            self.log.warning("The archive is not whole: %s", _failure(report))
        return _xcom(report, report_target, html_target)

    def _write(self, target: ObjectStoragePath, body: bytes, *, what: str) -> None:
        with atomic_write(target, log=self.log) as staged:
            staged.file.write(body)
            staged.commit()
        self.log.info("Wrote %s to %s", what, target)


def _hashes(values: Sequence[str] | str | None) -> list[str]:
    """Seal hashes given as a list, or as one string of hashes separated by blanks or commas."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part for item in items for part in str(item).replace(",", " ").split()]


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
            f" {counted(len(lost), 'damaged range')} {'is' if len(lost) == 1 else 'are'} older than "
            f"{RETENTION.days} days, and Asana no longer holds their events: restore them from a backup."
        )
    return message


def _xcom(
    report: ArchiveReport, report_target: ObjectStoragePath | None, html_target: ObjectStoragePath | None
) -> dict[str, Any]:
    late = report.late_events.to_json()
    return {
        "whole": report.whole,
        "files": report.files,
        "events": report.events,
        "problems": report.counts(),
        "reexport": [item.command for item in report.reexports if item.command],
        "late_events": {key: value for key, value in late.items() if key != "examples"},
        "report": str(report_target) if report_target is not None else None,
        "html_report": str(html_target) if html_target is not None else None,
        "evidence": report.evidence,
        # The per-file rows stay in the JSON report: a year of them is too much for an XCom.
        "object_lock": None
        if report.object_lock is None
        else {key: value for key, value in report.object_lock.items() if key != "files"},
    }
