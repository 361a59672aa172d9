"""A sensor that waits for new events in Asana's audit log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook, AuditLogCheck
from airflow_provider_asana_audit.query import FILTER_NAMES, AuditLogQuery
from airflow_provider_asana_audit.rules import check_conn_id, check_integer, check_retention, check_window
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogTrigger
from airflow_provider_asana_audit.utils import rendered

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["AsanaAuditLogSensor"]


class AsanaAuditLogSensor(BaseSensorOperator):
    """
    Wait until at least ``min_events`` audit events match the filters in ``[start_at, end_at)``.

    :param asana_audit_log_conn_id: the ``asana_audit_log`` connection id (templated).
    :param start_at: count events created at or after this instant (templated); an aware datetime or
        an ISO 8601 string. Default: the run's ``data_interval_start``.
    :param end_at: count only events created before this instant (templated); default: no end.
    :param event_type: only events of this type, e.g. ``user_login_failed`` (templated).
    :param actor_type: only events by actors of this type (templated).
    :param actor_gid: only events by this actor (templated); not with ``actor_type``.
    :param resource_gid: only events about this resource (templated).
    :param min_events: how many matching events are enough, at least 1.
    :param deferrable: wait in the triggerer instead of a worker; default
        ``[operators] default_deferrable``.

    With ``soft_fail=True`` only the end of the wait (``timeout``) skips the task: an error of this
    sensor (a wrong argument, a refused token, an unknown workspace, a failed read) fails it in every
    mode, as it would without ``soft_fail``.

    .. seealso::
        docs/sensors.md: the modes, the timeout, soft_fail, the XCom value, late events
    """

    template_fields: Sequence[str] = ("start_at", "end_at", *FILTER_NAMES, "asana_audit_log_conn_id")
    ui_color = "#f06a6a"

    def __init__(
        self,
        *,
        asana_audit_log_conn_id: str = AsanaAuditLogHook.default_conn_name,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        min_events: int = 1,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_integer(min_events, name="min_events", minimum=1)
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.start_at = start_at
        self.end_at = end_at
        self.event_type = event_type
        self.actor_type = actor_type
        self.actor_gid = actor_gid
        self.resource_gid = resource_gid
        self.min_events = min_events
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> AsanaAuditLogHook:
        """The hook of ``asana_audit_log_conn_id``."""
        return AsanaAuditLogHook(self.asana_audit_log_conn_id)

    @property
    def filters(self) -> dict[str, str]:
        """The filters that are set, by name; a template that rendered to nothing is not set."""
        values = {name: rendered(getattr(self, name)) for name in FILTER_NAMES}
        return {name: value for name, value in values.items() if value is not None}

    def _window(self, context: Context) -> tuple[str, str | None]:
        """The validated ``[start_at, end_at)`` of this run, as ISO strings."""
        start = rendered(self.start_at)
        start = context.get("data_interval_start") if start is None else start
        end = rendered(self.end_at)
        if start is None:
            raise AsanaAuditLogConfigError(
                "This run has no data interval (a manual run without a logical date?), so start_at has "
                "no default: pass start_at, e.g. start_at='{{ dag_run.start_date }}' to wait for events "
                "from the run's start, or an ISO 8601 instant such as '2024-05-14T00:00:00Z'"
            )
        try:
            start_dt = parse_instant(start, name="start_at")
            end_dt = parse_instant(end, name="end_at") if end is not None else None
        except ValueError as err:
            raise AsanaAuditLogConfigError(str(err)) from None
        if end_dt is not None:
            check_window(start_dt, end_dt)
        AuditLogQuery.build(start_dt, end_dt, filters=self.filters)  # validates before any request
        check_retention(end_dt)
        check_conn_id(self.asana_audit_log_conn_id)
        return format_instant(start_dt), format_instant(end_dt) if end_dt else None

    def _check(self, start_at: str, end_at: str | None) -> AuditLogCheck:
        found = self.hook.check(
            start_at=start_at,
            end_at=end_at,
            filters=self.filters,
            min_events=self.min_events,
        )
        self.log.info(
            "Found %d of %d matching Asana audit log events created at or after %s%s",
            found["count"],
            self.min_events,
            start_at,
            f" and before {end_at}" if end_at else "",
        )
        return found

    def poke(self, context: Context) -> PokeReturnValue:
        """Make one check; done once ``min_events`` events were found."""
        found = self._check(*self._window(context))
        return PokeReturnValue(is_done=found["count"] >= self.min_events, xcom_value=found)

    def execute(self, context: Context) -> Any:
        """Poke or reschedule as usual; when deferrable, check once, then defer to the trigger."""
        with self._errors_fail_under_soft_fail():
            if not self.deferrable:
                return super().execute(context)
            return self._check_then_defer(context)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after the trigger fired, with the same ``soft_fail`` rule as :meth:`execute`."""
        with self._errors_fail_under_soft_fail():
            return super().resume_execution(next_method, next_kwargs, context)

    @contextmanager
    def _errors_fail_under_soft_fail(self) -> Iterator[None]:
        """
        Undo the skip that ``soft_fail`` made of an error of this sensor: raise the error itself.

        .. seealso:: docs/sensors.md#soft_fail-and-errors
        """
        # Airflow's soft_fail skips what poke() raised as AirflowFailException (here: every error a
        # retry cannot cure) and any failure after a deferral, but not a failure before deferring: the
        # same wrong argument skipped in one mode and failed in another. A skip reads as "no events",
        # so a wrong window or a revoked token would skip every run in silence.
        error: BaseException | None = None
        try:
            yield
        except AirflowSkipException as skip:
            cause = skip.__cause__
            if not (self.soft_fail and isinstance(cause, (AsanaAuditLogError, AirflowFailException))):
                raise
            error = cause
        if error is not None:
            raise error

    def _check_then_defer(self, context: Context) -> Any:
        """Check once in the worker; unless enough events were found, defer to the trigger."""
        start_at, end_at = self._window(context)
        found = self._check(start_at, end_at)
        if found["count"] >= self.min_events:
            return found
        self.defer(
            trigger=AsanaAuditLogTrigger(
                asana_audit_log_conn_id=self.asana_audit_log_conn_id,
                start_at=start_at,
                end_at=end_at,
                filters=self.filters,
                min_events=self.min_events,
                poll_interval=self.poke_interval,
                # The trigger's own deadline: `airflow dags test` does not enforce `timeout` (always
                # finite: Airflow refuses an endless one).
                timeout_at=format_instant(datetime.now(timezone.utc) + timedelta(seconds=self.timeout)),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> AuditLogCheck:
        """Resume after the trigger fired: return what it found, or fail with its message."""
        status = event.get("status") if isinstance(event, dict) else None
        if status == "success" and event is not None:
            found = AuditLogCheck(
                count=event["count"],
                first_created_at=event["first_created_at"],
                first_gid=event["first_gid"],
                last_created_at=event["last_created_at"],
                last_gid=event["last_gid"],
                next_offset=event["next_offset"],
            )
            self.log.info("Found %d matching Asana audit log events", found["count"])
            return found
        if status == "timeout" and event is not None:
            message = f"Timed out waiting for Asana audit log events: {event.get('message')}"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        if status == "error" and event is not None:
            message = f"Waiting for Asana audit log events failed: {event.get('message')}"
            if event.get("permanent"):
                raise AirflowFailException(message)
            raise AsanaAuditLogError(message)
        raise AsanaAuditLogError(
            f"The Asana audit log trigger sent an event this sensor does not know: {event!r}"
        )
