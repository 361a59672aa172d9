"""
The interval export: one data interval of an Asana workspace's audit log, written exactly once to storage.

.. seealso:: docs/operators.md
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import (
    AirflowSkipException,
    BaseOperator,
    ObjectStoragePath,
    conf,
)
from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.budget import BudgetUsage, RetryPolicy
from airflow_provider_asana_audit.evidence.keys import SigningKey
from airflow_provider_asana_audit.evidence.records import record_sha256
from airflow_provider_asana_audit.evidence.signing import load_signing_key, write_record
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogRetentionError
from airflow_provider_asana_audit.export_file import (
    ExportWriter,
    Manifest,
    WrittenExport,
    file_format,
    remove_stale_manifest,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.layout import default_relative_path, manifest_path
from airflow_provider_asana_audit.query import FILTER_NAMES, AuditLogQuery
from airflow_provider_asana_audit.reconcile import Reconciliation, log_change, read_previous_export
from airflow_provider_asana_audit.rules import RETENTION, check_conn_id, check_retention, retention_start
from airflow_provider_asana_audit.slices import check_concurrency
from airflow_provider_asana_audit.storage import (
    ObjectLock,
    atomic_write,
    default_base,
    default_destination,
    executor_on_several_hosts,
    resolve_base,
    resolve_destination,
)
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.utils import rendered
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS, AirflowRescheduleException

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["AsanaAuditLogExportOperator"]

_EMPTY_INTERVAL_HELP = (
    "Give the DAG a schedule whose runs have a data interval, e.g. "
    "schedule=CronDataIntervalTimetable('0 0 * * *', timezone='UTC') or "
    "schedule=DeltaDataIntervalTimetable(timedelta(days=1)), or pass start_at and end_at to the operator. "
    "(On Airflow 3, cron strings, presets such as '@daily' and plain timedelta schedules make runs whose "
    "data interval is empty, and a manual run without a logical date has no data interval at all.)"
)


class AsanaAuditLogExportOperator(BaseOperator):
    """
    Export the Asana audit events created in ``[start_at, end_at)`` to one file and its manifest, exactly
    and atomically; every run of an interval writes the same bytes. Returns (pushes to XCom) a summary:
    ``path``, ``events``, ``start_at``, ``end_at``, ``pages``, ``sha256``, ``manifest``, ``change``,
    ``budget`` (what its requests cost the token's budget, keyed by a hash of the token), and ``record``
    (the SHA-256 of its signed record, with ``signing_conn_id``).

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        docs/operators.md

    :param start_at: inclusive start of the interval, an aware datetime or ISO 8601 string; default the
        run's ``data_interval_start``. (templated)
    :param end_at: exclusive end of the interval; default the run's ``data_interval_end``. (templated)
    :param event_type: export only events of this type. (templated)
    :param actor_type: export only events by actors of this type (``user``, ``asana``,
        ``asana_support``, ``anonymous``, ``external_administrator``); not with ``actor_gid``. (templated)
    :param actor_gid: export only events by this actor. (templated)
    :param resource_gid: export only events about this resource. (templated)
    :param asana_audit_log_conn_id: the ``asana_audit_log`` connection. (templated)
    :param destination: the output file, a path, a URI or an ``ObjectStoragePath``; ``.gz`` compresses.
        Default: the default layout under ``base_path``. (templated)
    :param destination_conn_id: the Airflow connection of the destination's filesystem, if it needs one
        (e.g. ``aws_default``). (templated)
    :param base_path: the root of the default layout when ``destination`` is not given; default the
        config option ``[asana_audit_log] base_path``, else ``$AIRFLOW_HOME/asana_audit_log``. (templated)
    :param page_size: events per request, 1 to 100.
    :param concurrency: requests at a time, 1 to 32; the file holds the same bytes as with 1.
    :param requests_per_minute: the token's budget as this task spends it, in requests a minute; default
        the connection's ``requests_per_minute``, else 1,500 (Asana's limit). With the connection's
        ``budget_redis_conn_id`` the budget is shared by every task of the token.
    :param request_retry: how hard each request is retried after a transient failure; default the
        client's :class:`RetryPolicy`.
    :param settle_period: how long after ``end_at`` to wait before exporting, for late-captured events.
    :param on_retention_violation: ``"fail"`` (default, not retried) or ``"skip"`` when the interval lies
        entirely outside what Asana keeps.
    :param allow_event_removal: let a re-export replace a file although it lacks some of that file's
        events; by default such a re-export fails and the file is kept.
    :param deferrable: wait for the settle period in the triggerer rather than in a worker; default the
        ``[operators] default_deferrable`` config option.
    :param signing_conn_id: the connection whose password holds the Ed25519 private key that signs a
        record of each export (needs the default layout: ``base_path``, not ``destination``); default no
        record. (templated)
    :param object_lock: write the file, its manifest and its record with this S3 Object Lock retention,
        e.g. ``ObjectLock(mode="COMPLIANCE", days=2555)``; S3 only.
    """

    template_fields: Sequence[str] = (
        "start_at",
        "end_at",
        "event_type",
        "actor_type",
        "actor_gid",
        "resource_gid",
        "asana_audit_log_conn_id",
        "destination",
        "destination_conn_id",
        "base_path",
        "signing_conn_id",
    )
    ui_color = "#f06a6a"

    def __init__(
        self,
        *,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        asana_audit_log_conn_id: str = AsanaAuditLogHook.default_conn_name,
        destination: str | ObjectStoragePath | None = None,
        destination_conn_id: str | None = None,
        base_path: str | None = None,
        page_size: int = 100,
        concurrency: int = 1,
        requests_per_minute: float | None = None,
        request_retry: RetryPolicy | None = None,
        settle_period: timedelta = timedelta(minutes=30),
        on_retention_violation: Literal["fail", "skip"] = "fail",
        allow_event_removal: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        signing_conn_id: str | None = None,
        object_lock: ObjectLock | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_at = start_at
        self.end_at = end_at
        self.event_type = event_type
        self.actor_type = actor_type
        self.actor_gid = actor_gid
        self.resource_gid = resource_gid
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.base_path = base_path
        self.page_size = page_size
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.request_retry = request_retry
        self.settle_period = settle_period
        self.on_retention_violation = on_retention_violation
        self.allow_event_removal = allow_event_removal
        self.deferrable = deferrable
        self.signing_conn_id = signing_conn_id
        self.object_lock = object_lock
        #: What this attempt read and wrote, for :meth:`get_openlineage_facets_on_complete`.
        self._lineage: dict[str, Any] = {}

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, check retention, wait for the settle period, then export."""
        query = self._query(context)
        self._check_retention(query)
        self._wait_until_settled(query)
        return self._export(query, context)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the settle period: everything is checked again, then the interval is exported."""
        return self.execute(context)

    # ------------------------------------------------------------------ the interval and the query

    def _query(self, context: Context) -> AuditLogQuery:
        """The rendered arguments as the query of one interval; AsanaAuditLogConfigError if wrong."""
        start_at, end_at = self._run_interval(context)
        query = AuditLogQuery.build(
            start_at,
            end_at,
            filters={name: rendered(getattr(self, name)) for name in FILTER_NAMES},
            page_size=self.page_size,
        )
        check_conn_id(self.asana_audit_log_conn_id)
        if self.destination is not None and not isinstance(
            self.destination, (str, os.PathLike, ObjectStoragePath)
        ):
            raise AsanaAuditLogConfigError(
                f"destination must be a path, a URI or an ObjectStoragePath, not {type(self.destination)}"
            )
        if isinstance(self.destination, str) and not self.destination.strip():
            # Not "unset": a destination that renders empty is a broken template, and silently writing
            # to the default layout instead would put the file where nobody looks for it.
            raise AsanaAuditLogConfigError("destination is an empty string: pass a path or URI, or None")
        if not isinstance(self.settle_period, timedelta) or self.settle_period < timedelta(0):
            raise AsanaAuditLogConfigError(
                f"settle_period={self.settle_period!r} must be a non-negative timedelta, "
                "e.g. timedelta(minutes=30)"
            )
        check_concurrency(self.concurrency)  # before anything is written
        if rendered(self.signing_conn_id) is not None:
            check_conn_id(rendered(self.signing_conn_id), name="signing_conn_id")
            if self.destination is not None:
                raise AsanaAuditLogConfigError(
                    "signing_conn_id signs exports in the default layout, where the archive check finds "
                    "their records: give base_path instead of destination, or drop signing_conn_id"
                )
        if self.object_lock is not None and not isinstance(self.object_lock, ObjectLock):
            raise AsanaAuditLogConfigError(
                f"object_lock must be an ObjectLock, e.g. ObjectLock(mode='COMPLIANCE', days=2555), not "
                f"{type(self.object_lock).__name__}"
            )
        if self.on_retention_violation not in ("fail", "skip"):
            raise AsanaAuditLogConfigError(
                f"on_retention_violation={self.on_retention_violation!r} must be 'fail' or 'skip'"
            )
        return query

    def _run_interval(self, context: Context) -> tuple[datetime, datetime]:
        """``start_at`` and ``end_at``, by default the run's data interval; never empty."""
        start_at = self._instant("start_at", self.start_at, context.get("data_interval_start"))
        end_at = self._instant("end_at", self.end_at, context.get("data_interval_end"))
        if start_at is None or end_at is None:
            missing = " and ".join(
                name for name, value in (("start", start_at), ("end", end_at)) if value is None
            )
            raise AsanaAuditLogConfigError(
                f"This run has no data interval {missing}, so there is nothing to export. "
                + _EMPTY_INTERVAL_HELP
            )
        if start_at == end_at:
            raise AsanaAuditLogConfigError(
                f"The data interval is empty (start == end == {format_instant(start_at)}), so there is "
                "nothing to export. " + _EMPTY_INTERVAL_HELP
            )
        return start_at, end_at

    @staticmethod
    def _instant(name: str, value: Any, default: Any) -> datetime | None:
        chosen = rendered(value)
        chosen = default if chosen is None else chosen
        if chosen is None:
            return None
        try:
            return parse_instant(chosen, name=name)
        except ValueError as err:
            raise AsanaAuditLogConfigError(str(err)) from None

    # ------------------------------------------------------------------ retention and settling

    def _check_retention(self, query: AuditLogQuery) -> None:
        start_at, end_at = _interval(query)
        try:
            check_retention(end_at)
        except AsanaAuditLogRetentionError as err:
            if self.on_retention_violation == "skip":
                raise AirflowSkipException(str(err)) from None
            raise
        oldest = retention_start()
        if start_at < oldest:
            self.log.warning(
                "The interval [%s, %s) starts before %s: Asana deletes events after %d days, so the export "
                "holds only the events from %s on",
                format_instant(start_at),
                format_instant(end_at),
                format_instant(oldest),
                RETENTION.days,
                format_instant(oldest),
            )

    def _wait_until_settled(self, query: AuditLogQuery) -> None:
        _, end_at = _interval(query)
        settled_at = end_at + self.settle_period
        wait = settled_at - datetime.now(timezone.utc)
        if wait <= timedelta(0):
            return
        self.log.info(
            "The interval ends at %s and Asana may still capture events for it until %s (settle period "
            "%s); waiting %.0f s before exporting",
            format_instant(end_at),
            format_instant(settled_at),
            self.settle_period,
            wait.total_seconds(),
        )
        if self.deferrable:
            self.defer(trigger=TimeDeltaTrigger(wait), method_name="execute_complete")
        if AIRFLOW_V_3_0_PLUS:
            raise AirflowRescheduleException(settled_at)  # type: ignore[no-untyped-call]
        # Airflow 2 re-queues a rescheduled plain operator immediately (only sensors honour the date).
        time.sleep(wait.total_seconds())

    # ------------------------------------------------------------------ the export

    def _export(self, query: AuditLogQuery, context: Context) -> dict[str, Any]:
        start_at, end_at = _interval(query)
        signing_conn_id = rendered(self.signing_conn_id)
        # Loaded before anything is read or written: a wrong key must not leave an unsigned export.
        key = load_signing_key(signing_conn_id) if signing_conn_id is not None else None
        hook = AsanaAuditLogHook(
            self.asana_audit_log_conn_id,
            retry=self.request_retry,
            requests_per_minute=self.requests_per_minute,
        )
        client = hook.get_conn()
        workspace_gid = client.workspace_gid
        self._lineage = {"base_url": client.base_url, "workspace_gid": workspace_gid}
        target = self._destination(query, workspace_gid)
        self._warn_if_scattered(target)
        manifest = manifest_path(target)
        reconciliation = Reconciliation(
            read_previous_export(target, manifest, start_at=start_at, end_at=end_at, log=self.log)
        )
        self.log.info(
            "Exporting Asana audit events of workspace %s created in [%s, %s) to %s",
            workspace_gid,
            format_instant(start_at),
            format_instant(end_at),
            target,
        )
        before = client.rate_limiter.usage()
        try:
            written, pages = self._write_file(hook, query, target, reconciliation)
        finally:
            client.close()
        budget = self._budget_report(client.token_key, client.rate_limiter.usage() - before)
        exported_at = format_instant(datetime.now(timezone.utc))
        change = reconciliation.change(events=written.events, sha256=written.sha256, detected_at=exported_at)
        if change is not None:
            log_change(change, start_at=start_at, end_at=end_at, log=self.log)
        content = Manifest(
            events=written.events,
            start_at=format_instant(start_at),
            end_at=format_instant(end_at),
            filters=query.filters,
            sha256=written.sha256,
            bytes=written.bytes,
            path=str(target),
            format=file_format(target.name),
            exported_at=exported_at,
            package_version=__version__,
            workspace_gid=workspace_gid,
            exported_by=_exported_by(context),
            changes=reconciliation.changes(change),
        )
        manifest_bytes = content.to_json()
        with atomic_write(manifest, log=self.log, object_lock=self.object_lock) as staged:
            staged.file.write(manifest_bytes)
            staged.commit()
        record = None
        if key is not None:
            record = record_sha256(self._sign(key, query, workspace_gid, manifest_bytes))
        self._lineage.update(file=target, manifest=manifest, events=written.events, size=written.bytes)
        return {
            "path": str(target),
            "events": written.events,
            "start_at": content.start_at,
            "end_at": content.end_at,
            "pages": pages,
            "sha256": written.sha256,
            "manifest": str(manifest),
            "change": change,
            "budget": budget,
            "record": record,
        }

    def _sign(self, key: SigningKey, query: AuditLogQuery, workspace_gid: str, manifest: bytes) -> Any:
        """Sign and store the record of the export just written (in the default layout)."""
        start_at, end_at = _interval(query)
        relative = default_relative_path(
            workspace_gid=workspace_gid, start_at=start_at, end_at=end_at, filters=query.filters
        )
        base = resolve_base(default_base(rendered(self.base_path)), conn_id=self.destination_conn_id)
        return write_record(
            key=key,
            base=base,
            relative=relative,
            manifest=manifest,
            object_lock=self.object_lock,
            log=self.log,
        )

    def _budget_report(self, token: str, cost: BudgetUsage) -> dict[str, Any]:
        """What the export's requests cost the token's budget: logged, and returned for XCom."""
        self.log.info(
            "The budget of token %s (a SHA-256 prefix): this export sent %d requests, %d refused (429), "
            "%d failed otherwise, and waited %.1f s for the budget (summed over its threads)",
            token,
            cost.requests,
            cost.refused,
            cost.failed,
            cost.waited,
        )
        return {
            "token_sha256": token,
            "requests": cost.requests,
            "refused": cost.refused,
            "failed": cost.failed,
            "waited_seconds": round(cost.waited, 3),
        }

    def _destination(self, query: AuditLogQuery, workspace_gid: str) -> ObjectStoragePath:
        """The file to write: ``destination``, else the default layout's file of the interval."""
        if self.destination is not None:
            return resolve_destination(self.destination, conn_id=self.destination_conn_id)
        start_at, end_at = _interval(query)
        return default_destination(
            base_path=self.base_path,
            workspace_gid=workspace_gid,
            start_at=start_at,
            end_at=end_at,
            filters=query.filters,
            conn_id=self.destination_conn_id,
        )

    def _warn_if_scattered(self, target: ObjectStoragePath) -> None:
        """Warn when each worker would keep the files of the runs it ran on its own disk."""
        executor = executor_on_several_hosts(target, executor=self.executor)
        if executor is None:
            return
        self.log.warning(
            "The export writes to %s, on the disk of the worker that runs it, but the executor %s runs "
            "tasks on several hosts: the archive scatters across their disks, and the archive check on "
            "any one of them reports gaps. Set base_path (or the option [asana_audit_log] base_path), or "
            "destination, to storage every worker shares, such as 's3://bucket/asana' "
            "(docs/scheduling.md#several-workers)",
            target,
            executor,
        )

    def _write_file(
        self,
        hook: AsanaAuditLogHook,
        query: AuditLogQuery,
        target: ObjectStoragePath,
        reconciliation: Reconciliation,
    ) -> tuple[WrittenExport, int]:
        """Stream the interval's pages into ``target``, atomically; what was written, and the pages read."""
        start_at, end_at = _interval(query)
        started, pages = time.monotonic(), 0
        with atomic_write(target, log=self.log, object_lock=self.object_lock) as staged:
            with (
                ExportWriter(
                    staged.file, file_format=file_format(target.name), start_at=start_at, end_at=end_at
                ) as writer,
                # Closing the pages stops a concurrent read's threads at once if writing fails.
                closing(hook.iter_pages(query=query, concurrency=self.concurrency)) as reading,
            ):
                for page in reading:
                    pages += 1
                    for event, created_at in writer.write(page.events):
                        reconciliation.observe(event, created_at)
            written = writer.close()
            if written.outside:
                self.log.warning(
                    "Dropped %d events whose created_at lies outside [%s, %s)",
                    written.outside,
                    format_instant(start_at),
                    format_instant(end_at),
                )
            reconciliation.refuse_removal(
                events=written.events,
                sha256=written.sha256,
                start_at=start_at,
                end_at=end_at,
                allowed=self.allow_event_removal,
            )
            remove_stale_manifest(manifest_path(target), sha256=written.sha256, log=self.log)
            staged.commit()
        elapsed = time.monotonic() - started
        self.log.info(
            "Wrote %d events from %d pages (%d bytes, sha256 %s) to %s in %.1f s (%.0f events/s)",
            written.events,
            pages,
            written.bytes,
            written.sha256,
            target,
            elapsed,
            written.events / max(elapsed, 1e-9),
        )
        return written, pages

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        OpenLineage: the workspace's audit log in; the file and its manifest out, by their final names.

        Without this, the lineage Airflow collects from object-storage writes would name the hidden
        staging object, since the move into place reports nothing. Needs the OpenLineage provider.
        """
        from airflow_provider_asana_audit.lineage import export_lineage

        return export_lineage(**self._lineage)


def _interval(query: AuditLogQuery) -> tuple[datetime, datetime]:
    """The ``[start_at, end_at)`` of an export's query, which always has both."""
    if query.start_at is None or query.end_at is None:  # pragma: no cover  # _query() always sets both
        raise AsanaAuditLogConfigError("an export needs both start_at and end_at")
    return query.start_at, query.end_at


def _exported_by(context: Context) -> dict[str, Any] | None:
    """
    Which Airflow task instance wrote the export: its DAG, task, run, map index, try and data interval.

    The data interval tells whether backfilling this DAG over the file's interval would re-export it:
    only when the task exported its run's data interval.
    """
    ti = context.get("ti")
    if ti is None:
        return None
    interval = (context.get("data_interval_start"), context.get("data_interval_end"))
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": ti.map_index,
        "try_number": ti.try_number,
        "data_interval_start": format_instant(interval[0]) if interval[0] is not None else None,
        "data_interval_end": format_instant(interval[1]) if interval[1] is not None else None,
    }
