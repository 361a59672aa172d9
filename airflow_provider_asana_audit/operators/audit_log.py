"""
The interval export: one data interval of an Asana workspace's audit log, written exactly once to storage.

The operator owns the interval, the destination, the file format, the atomic commit, the manifest and
the XCom summary. Reading (pagination, retries, ``Retry-After``, offset recovery, progress logging) is
the hook's client's job; nothing here repeats it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TypeVar

from airflow.exceptions import AirflowRescheduleException
from airflow.providers.common.compat.sdk import (
    AirflowSkipException,
    BaseOperator,
    ObjectStoragePath,
    conf,
)
from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.client import FILTER_NAMES, AuditLogQuery, Event, RetryPolicy
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogRetentionError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.timeutils import (
    RETENTION,
    format_instant,
    parse_instant,
    retention_problem,
    retention_start,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Filesystem provider to install, by URL scheme, for the "no filesystem registered" error.
_FILESYSTEM_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon",
    "s3a": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "abfss": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}
_T = TypeVar("_T")
_EMPTY_INTERVAL_HELP = (
    "Give the DAG a schedule whose runs have a data interval, e.g. "
    "schedule=CronDataIntervalTimetable('0 0 * * *', timezone='UTC') or "
    "schedule=DeltaDataIntervalTimetable(timedelta(days=1)), or pass start_at and end_at to the operator. "
    "(On Airflow 3, cron strings, presets such as '@daily' and plain timedelta schedules make runs whose "
    "data interval is empty, and a manual run without a logical date has no data interval at all.)"
)


@dataclass(frozen=True)
class _Export:
    """The validated, rendered arguments of one export."""

    query: AuditLogQuery
    start_at: datetime
    end_at: datetime
    filters: dict[str, str | None]


class _HashingWriter:
    """A write-only file wrapper that counts and hashes the bytes that reach storage."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


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
    ``package_version`` and ``workspace_gid``. A manifest whose ``sha256`` does not match the new file is
    deleted before the file is replaced, so a manifest, when present, describes the file next to it
    (unless two runs of the same interval race with different results; readers can check ``sha256``).
    Downstream jobs should wait for the manifest, not for the file.

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

    **XCom.** ``{"path", "events", "start_at", "end_at", "pages", "sha256", "manifest"}``.

    Progress (pages, events, events/s) is logged by the client at least every 5 seconds.

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
    :param requests_per_minute: cap on this token's request rate, shared by the tasks of one worker
        process; default no cap (Asana allows 1,500 per minute on paid plans).
    :param request_retry: how hard each request is retried after a transient failure (429, 5xx,
        broken connections) before the attempt fails; default the client's :class:`RetryPolicy`.
    :param settle_period: how long after ``end_at`` to wait before exporting, for late-captured events.
    :param on_retention_violation: ``"fail"`` (default, not retried) or ``"skip"`` when the interval lies
        entirely outside what Asana keeps.
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
        requests_per_minute: float | None = None,
        request_retry: RetryPolicy | None = None,
        settle_period: timedelta = timedelta(minutes=30),
        on_retention_violation: Literal["fail", "skip"] = "fail",
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
        self.requests_per_minute = requests_per_minute
        self.request_retry = request_retry
        self.settle_period = settle_period
        self.on_retention_violation = on_retention_violation
        self.deferrable = deferrable

    # ------------------------------------------------------------------ entry points

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, check retention, wait for the settle period, then export."""
        export = self._validate(context)
        self._check_retention(export)
        self._wait_until_settled(export)
        return self._export(export)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after the settle period: everything is checked again, then the interval is exported."""
        return self.execute(context)

    # ------------------------------------------------------------------ validation

    def _validate(self, context: Context) -> _Export:
        """Turn the rendered arguments into an :class:`_Export`; raise AsanaAuditLogConfigError if wrong."""
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
        filters: dict[str, str | None] = {}
        for name in FILTER_NAMES:
            value = getattr(self, name)
            # A template that renders nothing (e.g. "{{ params.get('event_type', '') }}") means "no filter".
            filters[name] = None if value is None or (isinstance(value, str) and not value.strip()) else value
        query = AuditLogQuery(start_at=start_at, end_at=end_at, page_size=self.page_size, **filters)
        if not isinstance(self.asana_audit_log_conn_id, str) or not self.asana_audit_log_conn_id.strip():
            raise AsanaAuditLogConfigError("asana_audit_log_conn_id must name an Airflow connection")
        if self.destination is not None and not isinstance(
            self.destination, (str, os.PathLike, ObjectStoragePath)
        ):
            raise AsanaAuditLogConfigError(
                f"destination must be a path, a URI or an ObjectStoragePath, not {type(self.destination)}"
            )
        if isinstance(self.destination, str) and not self.destination.strip():
            raise AsanaAuditLogConfigError("destination is an empty string: pass a path or URI, or None")
        if not isinstance(self.settle_period, timedelta) or self.settle_period < timedelta(0):
            raise AsanaAuditLogConfigError(
                f"settle_period={self.settle_period!r} must be a non-negative timedelta, "
                "e.g. timedelta(minutes=30)"
            )
        if self.on_retention_violation not in ("fail", "skip"):
            raise AsanaAuditLogConfigError(
                f"on_retention_violation={self.on_retention_violation!r} must be 'fail' or 'skip'"
            )
        return _Export(query=query, start_at=start_at, end_at=end_at, filters=filters)

    @staticmethod
    def _instant(name: str, value: Any, default: Any) -> datetime | None:
        chosen = value if value is not None and value != "" else default
        if chosen is None:
            return None
        try:
            return parse_instant(chosen, name=name)
        except ValueError as err:
            raise AsanaAuditLogConfigError(str(err)) from None

    # ------------------------------------------------------------------ retention and settling

    def _check_retention(self, export: _Export) -> None:
        window = f"[{format_instant(export.start_at)}, {format_instant(export.end_at)})"
        problem = retention_problem(export.end_at)
        if problem is None:
            oldest = retention_start()
            if export.start_at < oldest:
                self.log.warning(
                    "The interval %s starts before %s: Asana deletes events after %d days, so the export "
                    "holds only the events from %s on",
                    window,
                    format_instant(oldest),
                    RETENTION.days,
                    format_instant(oldest),
                )
            return
        message = (
            f"Nothing to export for the interval {window}: its end {problem}. Export only intervals "
            f"within the last {RETENTION.days} days (set the DAG's start_date or the backfill's "
            "from-date accordingly)."
        )
        if self.on_retention_violation == "skip":
            raise AirflowSkipException(message)
        raise AsanaAuditLogRetentionError(message)

    def _wait_until_settled(self, export: _Export) -> None:
        settled_at = export.end_at + self.settle_period
        wait = settled_at - datetime.now(timezone.utc)
        if wait <= timedelta(0):
            return
        self.log.info(
            "The interval ends at %s and Asana may still capture events for it until %s (settle period "
            "%s); waiting %.0f s before exporting",
            format_instant(export.end_at),
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

    def _export(self, export: _Export) -> dict[str, Any]:
        hook = AsanaAuditLogHook(
            self.asana_audit_log_conn_id,
            retry=self.request_retry,
            requests_per_minute=self.requests_per_minute,
        )
        client = hook.get_conn()
        workspace_gid = client.workspace_gid
        target = self._destination(export, workspace_gid)
        compressed = target.name.endswith(".gz")
        manifest_path = target.parent / f"{target.name}.manifest.json"
        self.log.info(
            "Exporting Asana audit events of workspace %s created in [%s, %s) to %s",
            workspace_gid,
            format_instant(export.start_at),
            format_instant(export.end_at),
            target,
        )
        started = time.monotonic()
        try:
            stats = self._write_atomically(
                target,
                lambda raw: self._write_events(hook, export, raw, compressed=compressed),
                before_commit=lambda result: self._drop_stale_manifest(manifest_path, sha256=result[2]),
            )
        finally:
            client.close()
        events, pages, sha256, size = stats
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
        manifest = {
            "events": events,
            "start_at": format_instant(export.start_at),
            "end_at": format_instant(export.end_at),
            "filters": export.filters,
            "sha256": sha256,
            "bytes": size,
            "path": str(target),
            "format": "jsonl.gz" if compressed else "jsonl",
            "exported_at": format_instant(datetime.now(timezone.utc)),
            "package_version": __version__,
            "workspace_gid": workspace_gid,
        }
        body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        self._write_atomically(manifest_path, lambda raw: _write_all(raw, body))
        return {
            "path": str(target),
            "events": events,
            "start_at": manifest["start_at"],
            "end_at": manifest["end_at"],
            "pages": pages,
            "sha256": sha256,
            "manifest": str(manifest_path),
        }

    def _write_events(
        self, hook: AsanaAuditLogHook, export: _Export, raw: BinaryIO, *, compressed: bool
    ) -> tuple[int, int, str, int]:
        """Stream the interval's events into ``raw``; return (events, pages, sha256, bytes)."""
        hashing = _HashingWriter(raw)
        out: Any = (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=6, mtime=0)  # type: ignore[arg-type]
            if compressed
            else hashing
        )
        events = pages = outside = 0
        try:
            # The client yields each event once, in Asana's order; only the window is checked here.
            for page in hook.iter_pages(
                export.start_at,
                export.end_at,
                page_size=export.query.page_size,
                **export.filters,
            ):
                pages += 1
                lines: list[str] = []
                for event in page.events:
                    created_at = _created_at(event)
                    if created_at is None or not export.start_at <= created_at < export.end_at:
                        outside += 1
                        continue
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
                format_instant(export.start_at),
                format_instant(export.end_at),
            )
        return events, pages, hashing.sha256.hexdigest(), hashing.size

    # ------------------------------------------------------------------ storage

    def _destination(self, export: _Export, workspace_gid: str) -> ObjectStoragePath:
        """The destination as an ``ObjectStoragePath`` whose filesystem is available."""
        if self.destination is not None:
            return self._storage_path(self.destination)
        base = self.base_path or conf.get("asana_audit_log", "base_path", fallback=None)
        if not base:
            home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
            base = f"file://{os.path.abspath(home)}/asana_audit_log"
        start, end = export.start_at, export.end_at
        suffix = ""
        if any(value is not None for value in export.filters.values()):
            digest = hashlib.sha256(json.dumps(export.filters, sort_keys=True).encode()).hexdigest()
            suffix = f"_f{digest[:10]}"
        name = f"asana_audit_log_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}{suffix}.jsonl.gz"
        return self._storage_path(
            f"{str(base).rstrip('/')}/workspace_gid={workspace_gid}/date={start:%Y-%m-%d}/{name}"
        )

    def _storage_path(self, value: str | os.PathLike[str] | ObjectStoragePath) -> ObjectStoragePath:
        if isinstance(value, ObjectStoragePath):
            path = value
        else:
            text = os.fspath(value).strip()
            if "://" not in text and not os.path.isabs(text):
                raise AsanaAuditLogConfigError(
                    f"destination {text!r} is a relative path: use an absolute path or a URI such as "
                    "'file:///data/asana/export.jsonl.gz' or 's3://bucket/asana/export.jsonl.gz'"
                )
            try:
                path = (
                    ObjectStoragePath(text, conn_id=self.destination_conn_id)
                    if self.destination_conn_id
                    else ObjectStoragePath(text)
                )
            except (ValueError, ImportError) as err:
                raise self._filesystem_error(text.split("://", 1)[0] if "://" in text else "", err) from None
        try:
            path.fs  # noqa: B018  # resolves the filesystem: fails when its provider is missing
        except (ValueError, ImportError) as err:
            raise self._filesystem_error(str(path.protocol or ""), err) from None
        if not path.name or str(path).endswith("/"):
            raise AsanaAuditLogConfigError(
                f"destination {str(path)!r} names a directory: name the file, e.g. '.../export.jsonl.gz'"
            )
        return path

    @staticmethod
    def _filesystem_error(scheme: str, err: Exception) -> AsanaAuditLogConfigError:
        provider = _FILESYSTEM_PROVIDERS.get(scheme.lower())
        if provider:
            advice = f"install {provider} in every Airflow worker"
        else:
            advice = (
                "install the Airflow provider that registers this filesystem for object storage, or use "
                "file://, s3:// (apache-airflow-providers-amazon) or gs:// (apache-airflow-providers-google)"
            )
        return AsanaAuditLogConfigError(
            f"Airflow cannot write to {scheme or 'this'}:// destinations ({err}): {advice}"
        )

    def _write_atomically(
        self,
        target: ObjectStoragePath,
        write: Callable[[BinaryIO], _T],
        before_commit: Callable[[_T], None] | None = None,
    ) -> _T:
        """
        Write ``target`` through a hidden staging object in the same place, then move it over ``target``.

        ``write(raw)`` fills the staging object; ``before_commit(result)`` runs just before the move. The
        staging object is removed on any failure, so ``target`` holds either its previous content or the
        complete new one.
        """
        parent = target.parent
        if _is_local(target):
            parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".{target.name}.{uuid.uuid4().hex}.partial"
        try:
            with staging.open("wb") as raw:  # type: ignore[no-untyped-call]
                result = write(raw)
            if before_commit is not None:
                before_commit(result)
            staging.rename(target)
        except BaseException:
            _remove_quietly(staging, self.log)
            raise
        return result

    def _drop_stale_manifest(self, manifest: ObjectStoragePath, *, sha256: str) -> None:
        """Delete the manifest if it describes other bytes than the ones about to replace its file."""
        try:
            if not manifest.exists():
                return
            previous = json.loads(manifest.read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError):
            previous = None
        if previous != sha256:
            self.log.info("Removing the manifest of the previous, different export at %s", manifest)
            manifest.unlink()


def _write_all(raw: BinaryIO, body: bytes) -> None:
    raw.write(body)


def _created_at(event: Event) -> datetime | None:
    value = event.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value, name="created_at")
    except ValueError:
        return None


def _is_local(path: ObjectStoragePath) -> bool:
    protocol = path.fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


def _remove_quietly(path: ObjectStoragePath, log: Any) -> None:
    try:
        if path.exists():
            path.unlink()
    except Exception as err:  # the original error matters more
        log.warning("Could not remove the staging object %s: %s", path, err)
