"""
The interval export: one data interval of an Asana workspace's audit log, written exactly once to storage.

The operator owns the interval, the query, the destination, the file format, the manifest and the XCom
summary. Reading (pagination, retries, ``Retry-After``, offset recovery, progress logging) is the hook's
client's job, and where files go and how they get there whole is the job of
:mod:`~airflow_provider_asana_audit.storage`; nothing here repeats either.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Generator, Sequence
from contextlib import closing
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from airflow.providers.common.compat.sdk import (
    AirflowSkipException,
    BaseOperator,
    ObjectStoragePath,
    conf,
)
from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.archive import PreviousExport, Reconciliation, read_manifest
from airflow_provider_asana_audit.client import FILTER_NAMES, AuditLogQuery, Page, RetryPolicy
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogArchiveError,
    AsanaAuditLogConfigError,
    AsanaAuditLogRetentionError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.rules import RETENTION, check_conn_id, check_retention, retention_start
from airflow_provider_asana_audit.slices import check_concurrency
from airflow_provider_asana_audit.storage import (
    HashingWriter,
    default_destination,
    manifest_path,
    resolve_destination,
    write_atomically,
)
from airflow_provider_asana_audit.timeutils import (
    event_created_at,
    format_duration,
    format_instant,
    parse_instant,
)
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
    Export the Asana audit events created in ``[start_at, end_at)`` to one file, exactly and atomically.

    By default the interval is the run's data interval, so a daily DAG on
    ``CronDataIntervalTimetable("0 0 * * *", timezone="UTC")`` exports one day per run and can be
    backfilled, cleared, retried and run in parallel: every run of an interval writes the same bytes.

    **Format.** JSON Lines in UTF-8: one Asana event per line, exactly as the API returned it (key order
    kept, ``ensure_ascii=False``, compact separators), in ``created_at`` order, each gid once. A
    destination ending in ``.gz`` is gzip-compressed (level 6, no file name, mtime 0), so the same events
    always give the same bytes.

    **Atomic and idempotent.** Events are streamed (never held in memory) to a hidden staging object next
    to the destination (``.<name>.<uuid>.partial``), which is then moved onto the destination: a rename
    on local disks, a copy and delete on object stores, where the destination object appears whole. On
    any failure the staging object is deleted, so the destination keeps what it held before. Then the
    manifest ``<destination>.manifest.json`` is written the same way: ``events``, ``start_at``,
    ``end_at``, ``filters``, ``sha256`` and ``bytes`` of the file, ``path``, ``format``, ``exported_at``,
    ``package_version``, ``workspace_gid``, ``exported_by`` (the DAG, task, run, map index and try) and
    ``changes`` (see below). A manifest whose ``sha256`` does not match the new file is
    deleted before the file is replaced, so a manifest, when present, describes the file next to it
    (unless two runs of the same interval race with different results; readers can check ``sha256``).
    Downstream jobs should wait for the manifest, not for the file. On a local disk the file, the
    manifest and the staging file (from its first byte) have mode ``0600``: audit events are personal
    data. A killed attempt leaves its staging object behind; a later export of the same destination
    removes those not modified for :data:`~airflow_provider_asana_audit.storage.STAGING_GRACE_PERIOD`
    (a live attempt renews its own), and ``python -m airflow_provider_asana_audit.storage sweep BASE``
    sweeps a whole base path.

    **Destination.** A path or URI string or an ``ObjectStoragePath``; any scheme Airflow's object
    storage supports (``file://``, plain absolute paths, ``s3://`` with the Amazon provider, ``gs://``
    with the Google provider, ...). Without one, the file goes to
    ``{base}/workspace_gid={gid}/date={start:%Y-%m-%d}/asana_audit_log_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz``
    (with ``_f<hash>`` before ``.jsonl.gz`` when filters are set, so differently filtered exports of one
    interval do not overwrite each other), where ``base`` is ``base_path``, else the Airflow config
    option ``[asana_audit_log] base_path``, else ``file://{AIRFLOW_HOME}/asana_audit_log``.

    **Retention.** Asana keeps no events before 2021-10-08 and deletes them after 90 days. An interval
    that lies entirely where nothing is kept fails without retries (``on_retention_violation="fail"``)
    or is skipped (``"skip"``); one that lies partly there is exported with a warning.

    **Late events and the settle period.** Asana may capture an event some time after its
    ``created_at``; AWS AppFabric documents up to 30 minutes of delay for Asana's audit events. An
    interval is therefore exported only once ``end_at + settle_period`` has passed, 30 minutes by
    default. Until then the task waits without holding a worker: it defers to the triggerer
    (``deferrable=True``) or, on Airflow 3, is rescheduled; on Airflow 2, where a rescheduled plain
    operator would be re-queued at once, a non-deferrable task sleeps until then.

    **Re-exports and late events.** When the destination already holds a file, the export first reads
    its gids (8 bytes per event in memory), then compares: if the new file's bytes differ, the manifest's
    ``changes`` gains a record of the previous ``sha256``, ``bytes``, event count and ``exported_at``, the
    events added and removed, and the ``created_at`` range of the added ones, and added events are
    logged as a warning that says how late Asana captured them. Records of earlier changes are carried
    over, so the manifest keeps the interval's history. A re-export that lacks events of the file it
    replaces fails and keeps the file, unless ``allow_event_removal=True``.

    **XCom.** ``{"path", "events", "start_at", "end_at", "pages", "sha256", "manifest", "change"}``, where
    ``change`` is this export's change record, or ``None`` for a first export or identical bytes.

    Progress (pages, events, events/s) is logged by the client as pages arrive, at most every 5 seconds.

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
        Default: see above. (templated)
    :param destination_conn_id: the Airflow connection of the destination's filesystem, if it needs one
        (e.g. ``aws_default``). (templated)
    :param base_path: the root of the default layout when ``destination`` is not given. (templated)
    :param page_size: events per request, 1 to 100.
    :param concurrency: requests at a time, 1 to 32. Above 1 the interval is read as time slices side by
        side (split again where events are dense), and the file holds the same bytes as with 1. All
        requests share the token's rate limit; Asana allows about 50 concurrent requests per token.
    :param requests_per_minute: cap on this task's request rate with this token, shared by all its
        concurrent requests; default no cap (Asana allows 1,500 per minute on paid plans). Airflow runs
        each task in a process of its own, so the cap does not span tasks: a pool does (see the docs on
        scheduling).
    :param request_retry: how hard each request is retried after a transient failure (429, 5xx,
        broken connections) before the attempt fails; default the client's :class:`RetryPolicy`.
    :param settle_period: how long after ``end_at`` to wait before exporting, for late-captured events.
    :param on_retention_violation: ``"fail"`` (default, not retried) or ``"skip"`` when the interval lies
        entirely outside what Asana keeps.
    :param allow_event_removal: let a re-export replace a file although it lacks some of that file's
        events; by default such a re-export fails and the file is kept, since Asana deletes events after
        90 days and re-exporting an old interval would shrink the archive.
    :param deferrable: wait for the settle period in the triggerer rather than in a worker; default the
        ``[operators] default_deferrable`` config option.
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
        if self.on_retention_violation not in ("fail", "skip"):
            raise AsanaAuditLogConfigError(
                f"on_retention_violation={self.on_retention_violation!r} must be 'fail' or 'skip'"
            )
        return query

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
        hook = AsanaAuditLogHook(
            self.asana_audit_log_conn_id,
            retry=self.request_retry,
            requests_per_minute=self.requests_per_minute,
        )
        client = hook.get_conn()
        workspace_gid = client.workspace_gid
        self._lineage = {"base_url": client.base_url, "workspace_gid": workspace_gid}
        target = (
            resolve_destination(self.destination, conn_id=self.destination_conn_id)
            if self.destination is not None
            else default_destination(
                base_path=self.base_path,
                workspace_gid=workspace_gid,
                start_at=start_at,
                end_at=end_at,
                filters=query.filters,
                conn_id=self.destination_conn_id,
            )
        )
        compressed = target.name.endswith(".gz")
        manifest = manifest_path(target)
        reconciliation = Reconciliation(self._previous_export(target, manifest, query))
        self.log.info(
            "Exporting Asana audit events of workspace %s created in [%s, %s) to %s",
            workspace_gid,
            format_instant(start_at),
            format_instant(end_at),
            target,
        )
        started = time.monotonic()
        try:
            events, pages, sha256, size = write_atomically(
                target,
                lambda raw: self._write_events(
                    hook.read_pages(query, concurrency=self.concurrency),
                    query,
                    raw,
                    compressed=compressed,
                    reconciliation=reconciliation,
                ),
                before_commit=lambda result: self._before_replacing(
                    manifest, reconciliation, events=result[0], sha256=result[2], query=query
                ),
                log=self.log,
            )
        finally:
            client.close()
        elapsed = time.monotonic() - started
        self.log.info(
            "Wrote %d events from %d pages (%d bytes, sha256 %s) to %s in %.1f s (%.0f events/s)",
            events,
            pages,
            size,
            sha256,
            target,
            elapsed,
            events / max(elapsed, 1e-9),
        )
        exported_at = format_instant(datetime.now(timezone.utc))
        change = reconciliation.change(events=events, sha256=sha256, detected_at=exported_at)
        if change is not None:
            self._log_change(change, query)
        content = {
            "events": events,
            "start_at": format_instant(start_at),
            "end_at": format_instant(end_at),
            "filters": query.filters,
            "sha256": sha256,
            "bytes": size,
            "path": str(target),
            "format": "jsonl.gz" if compressed else "jsonl",
            "exported_at": exported_at,
            "package_version": __version__,
            "workspace_gid": workspace_gid,
            "exported_by": _exported_by(context),
            "changes": reconciliation.changes(change),
        }
        body = (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        write_atomically(manifest, lambda raw: raw.write(body), log=self.log)
        self._lineage.update(file=target, manifest=manifest, events=events, size=size)
        return {
            "path": str(target),
            "events": events,
            "start_at": content["start_at"],
            "end_at": content["end_at"],
            "pages": pages,
            "sha256": sha256,
            "manifest": str(manifest),
            "change": change,
        }

    def _write_events(
        self,
        pages: Generator[Page, None, None],
        query: AuditLogQuery,
        raw: BinaryIO,
        *,
        compressed: bool,
        reconciliation: Reconciliation,
    ) -> tuple[int, int, str, int]:
        """Stream the pages' events into ``raw``; return (events, pages, sha256, bytes)."""
        start_at, end_at = _interval(query)
        hashing = HashingWriter(raw)
        out: Any = (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=6, mtime=0)  # type: ignore[arg-type]
            if compressed
            else hashing
        )
        events = page_count = outside = 0
        try:
            # Closing the pages stops a concurrent read's threads at once if writing fails.
            with closing(pages):
                # The client yields each event once, in Asana's order; only the window is checked here.
                for page in pages:
                    page_count += 1
                    lines: list[str] = []
                    for event in page.events:
                        created_at = event_created_at(event)
                        if created_at is None or not start_at <= created_at < end_at:
                            outside += 1
                            continue
                        reconciliation.observe(event, created_at)
                        lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
                    if lines:
                        out.write("".join(lines).encode("utf-8"))
                        events += len(lines)
        finally:
            if compressed:
                out.close()  # writes the gzip trailer; does not close ``raw``
        if outside:
            self.log.warning(
                "Dropped %d events whose created_at lies outside [%s, %s)",
                outside,
                format_instant(start_at),
                format_instant(end_at),
            )
        return events, page_count, hashing.sha256.hexdigest(), hashing.size

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        OpenLineage: the workspace's audit log in; the file and its manifest out, by their final names.

        Without this, the lineage Airflow collects from object-storage writes would name the hidden
        staging object, since the move into place reports nothing. Needs the OpenLineage provider.
        """
        from airflow_provider_asana_audit.lineage import export_lineage

        return export_lineage(**self._lineage)

    def _previous_export(
        self, target: ObjectStoragePath, manifest: ObjectStoragePath, query: AuditLogQuery
    ) -> PreviousExport | None:
        """The file this export will replace, read to compare the two; ``None`` for a first export."""
        start_at, end_at = _interval(query)
        try:
            previous = PreviousExport.read(target, manifest, start_at=start_at, end_at=end_at)
        except OSError as err:
            self.log.warning(
                "Could not read the previous export at %s to compare it with this one (%s); this export "
                "will replace it without recording what changed",
                target,
                err,
            )
            return None
        if previous is not None:
            self.log.info(
                "Re-exporting: %s already holds %d events (sha256 %s); what changes will be recorded in "
                "the manifest",
                target,
                previous.events,
                previous.sha256,
            )
            if previous.error:
                self.log.warning("The previous export at %s %s", target, previous.error)
            if previous.invalid:
                self.log.warning(
                    "The previous export at %s holds %d lines that are not audit events; the re-export "
                    "leaves them out",
                    target,
                    previous.invalid,
                )
            if previous.misplaced:
                self.log.warning(
                    "The previous export at %s holds %d events whose created_at lies outside [%s, %s): "
                    "they belong to other intervals' files, and the re-export leaves them out",
                    target,
                    previous.misplaced,
                    format_instant(start_at),
                    format_instant(end_at),
                )
        return previous

    def _before_replacing(
        self,
        manifest: ObjectStoragePath,
        reconciliation: Reconciliation,
        *,
        events: int,
        sha256: str,
        query: AuditLogQuery,
    ) -> None:
        """Just before the new file replaces the old: refuse to lose events, then drop a stale manifest."""
        previous = reconciliation.previous
        if previous is not None and previous.sha256 != sha256:
            removed = reconciliation.removed(events=events)
            if removed > 0 and not self.allow_event_removal:
                start_at, end_at = _interval(query)
                raise AsanaAuditLogArchiveError(
                    f"The re-export of [{format_instant(start_at)}, {format_instant(end_at)}) lacks "
                    f"{removed} of the {len(previous.gids)} events of the file it would replace, so the "
                    "file was kept as it is. Asana deletes events 90 days after they were created: "
                    "re-exporting an interval that old would shrink the archive. Pass "
                    "allow_event_removal=True to replace the file anyway"
                )
        self._drop_stale_manifest(manifest, sha256=sha256)

    def _log_change(self, change: dict[str, Any], query: AuditLogQuery) -> None:
        """Report what a re-export changed: late events get a warning that says how to catch them."""
        start_at, end_at = _interval(query)
        window = f"[{format_instant(start_at)}, {format_instant(end_at)})"
        added, removed = change["added_events"], change["removed_events"]
        if added and change["previous_damaged"]:
            # The added events may just have been in the damaged part: calling them late (and advising
            # a longer settle period) would mislead.
            created = change["added_created_at"]
            self.log.warning(
                "The re-export of %s holds %d events that the sound part of the previous export "
                "(%d events, sha256 %s) did not, created from %s to %s; the previous file was damaged, "
                "so they need not be late events",
                window,
                added,
                change["previous_events"],
                change["previous_sha256"],
                created["first"],
                created["last"],
            )
        elif added:
            created = change["added_created_at"]
            previous_at = change["previous_exported_at"]
            if previous_at is not None:
                after_end = format_duration(parse_instant(previous_at) - end_at)
                advice = (
                    f"Asana captured them at least {after_end} after the interval's end (the previous "
                    f"export ran at {previous_at}): the settle period of the export that first wrote "
                    "this interval must be longer than that to include such events the first time"
                )
            else:
                advice = "the previous export had no valid manifest, so when it ran is not known"
            self.log.warning(
                "Late events: the re-export of %s holds %d events that the previous export (%d events, "
                "sha256 %s) did not, created from %s to %s; %s",
                window,
                added,
                change["previous_events"],
                change["previous_sha256"],
                created["first"],
                created["last"],
                advice,
            )
        if removed:
            self.log.warning(
                "The re-export of %s lacks %d events of the previous export (%d events, sha256 %s); "
                "allow_event_removal=True let it replace the file",
                window,
                removed,
                change["previous_events"],
                change["previous_sha256"],
            )
        if not added and not removed:
            self.log.info(
                "The re-export of %s holds the same events as the previous export in other bytes "
                "(previous sha256 %s)",
                window,
                change["previous_sha256"],
            )

    def _drop_stale_manifest(self, manifest: ObjectStoragePath, *, sha256: str) -> None:
        """Delete the manifest if it describes other bytes than the ones about to replace its file."""
        try:
            if not manifest.exists():
                return
            # read_manifest refuses any JSON that is not an object: a manifest holding a list or a string
            # must not stop every later export of its file.
            previous = (read_manifest(manifest) or {}).get("sha256")
        except (OSError, ValueError):
            previous = None
        if previous != sha256:
            self.log.info("Removing the manifest of the previous, different export at %s", manifest)
            # Another run of the same destination may have removed it first: gone either way.
            manifest.unlink(missing_ok=True)


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
