"""
The async side: triggers that wait for, or follow, new events in Asana's audit log.

Both triggers resolve their connection with the hook's async API and run every blocking HTTP call of
the client in a thread, so the triggerer's event loop is never blocked. They keep no state but their
keyword arguments, so a restarted triggerer rebuilds them from :meth:`serialize` alone.

- :class:`AsanaAuditLogTrigger` fires once, when enough events have arrived: the deferrable mode of
  :class:`~airflow_provider_asana_audit.sensors.audit_log.AsanaAuditLogSensor`.
- :class:`AsanaAuditLogEventTrigger` fires once per new event, for Airflow 3's ``AssetWatcher``.

Both read through :class:`~airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook`; the sensor
and :class:`AsanaAuditLogTrigger` share the hook's one check (``check`` and ``acheck``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_asana_audit.client import AuditLogQuery, Event, StreamPosition
from airflow_provider_asana_audit.exceptions import AsanaAuditLogRetriesExhaustedError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = ["EVENT_PAYLOAD_KEYS", "AsanaAuditLogEventTrigger", "AsanaAuditLogTrigger"]

#: The keys of an event that :class:`AsanaAuditLogEventTrigger` puts in its payload.
EVENT_PAYLOAD_KEYS = ("gid", "created_at", "event_type", "actor", "resource", "context")


class AsanaAuditLogTrigger(BaseTrigger):
    """
    Fire once at least ``min_events`` events match the filters in ``[start_at, end_at)``.

    Polls with :meth:`AsanaAuditLogHook.acheck` every ``poll_interval`` seconds. The event's payload is
    ``{"status": "success", **AuditLogCheck}``, or ``{"status": "error", "message": ...}`` if anything
    fails (transient failures are first retried by the client); ``"permanent": True`` marks errors that
    a task retry cannot cure (a refused token, a wrong workspace, bad arguments). At ``timeout_at`` it
    gives up with ``{"status": "timeout", "message": ...}``: the scheduler enforces a deferred task's
    timeout, but ``airflow dags test`` runs triggers in-process and does not, so the trigger carries
    its own deadline.

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: events created at or after this instant, as an ISO 8601 string.
    :param end_at: events created before this instant, as an ISO 8601 string, or ``None``.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param min_events: how many events are enough.
    :param poll_interval: seconds between checks.
    :param timeout_at: when to give up, as an ISO 8601 string; ``None``: never.
    """

    def __init__(
        self,
        *,
        asana_audit_log_conn_id: str,
        start_at: str,
        end_at: str | None = None,
        filters: dict[str, str] | None = None,
        min_events: int = 1,
        poll_interval: float = 60.0,
        timeout_at: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.start_at = start_at
        self.end_at = end_at
        self.filters = dict(filters or {})
        self.min_events = min_events
        self.poll_interval = poll_interval
        self.timeout_at = timeout_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "asana_audit_log_conn_id": self.asana_audit_log_conn_id,
                "start_at": self.start_at,
                "end_at": self.end_at,
                "filters": dict(self.filters),
                "min_events": self.min_events,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check every ``poll_interval`` seconds until satisfied; yield one success, timeout or error."""
        hook = AsanaAuditLogHook(self.asana_audit_log_conn_id)
        deadline = parse_instant(self.timeout_at, name="timeout_at") if self.timeout_at else None
        try:
            while True:
                found = await hook.acheck(
                    start_at=self.start_at,
                    end_at=self.end_at,
                    filters=self.filters,
                    min_events=self.min_events,
                )
                if found["count"] >= self.min_events:
                    self.log.info("Found %d matching Asana audit log events", found["count"])
                    yield _trigger_event({"status": "success", **found})
                    return
                left = (deadline - datetime.now(timezone.utc)).total_seconds() if deadline else None
                if left is not None and left <= 0:
                    yield _trigger_event(
                        {
                            "status": "timeout",
                            "message": f"Found {found['count']} of {self.min_events} matching Asana audit "
                            f"log events by the deadline {self.timeout_at}",
                            **found,
                        }
                    )
                    return
                self.log.info(
                    "Found %d of %d Asana audit log events; checking again in %s s",
                    found["count"],
                    self.min_events,
                    self.poll_interval,
                )
                # Wake at the deadline rather than a whole poll interval after it.
                await asyncio.sleep(self.poll_interval if left is None else min(self.poll_interval, left))
        except Exception as err:
            # The message goes to the task log. The package's own messages never hold the token, and
            # the client sends the token only in a header, which no error of requests repeats.
            yield _trigger_event(
                {
                    "status": "error",
                    "message": str(err) or type(err).__name__,
                    "permanent": isinstance(err, AirflowFailException),
                }
            )
        finally:
            hook.close()


class AsanaAuditLogEventTrigger(BaseEventTrigger):  # type: ignore[misc]  # BaseTrigger on Airflow 2
    """
    Follow the audit log and fire one event per new matching audit event, for an ``AssetWatcher``.

    Reads every matching event created at or after ``start_at``, then polls the stream's offset every
    ``poll_interval`` seconds for events captured later. Each event is delivered once while the
    trigger runs; if Asana rejects the offset (it expired), reading resumes at the last delivered
    ``created_at`` and skips the events already delivered at that instant.

    Delivery across triggerer restarts: the trigger keeps no state but its keyword arguments, so a
    restarted trigger starts again from ``start_at``. With a fixed ``start_at`` it redelivers the
    events since then (at least once); with ``start_at=None`` it starts from the instant it first
    polls, so events created while no triggerer ran are not delivered (at most once). Keep
    ``start_at`` constant in the DAG file (never ``datetime.now()``): the trigger's identity is its
    keyword arguments.

    Each payload, which Airflow puts in the asset event's ``extra["payload"]``, holds the event's
    ``gid``, ``created_at``, ``event_type``, ``actor``, ``resource`` and ``context``.

    Transient failures that outlast the client's retries are logged and polled again; errors that a
    retry cannot cure (a refused token, a wrong workspace, bad filters) end the trigger with the error.
    Never yields anything but audit events, so a watched asset is never updated by an error.

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: deliver events created at or after this instant (an ISO 8601 string or an aware
        datetime); ``None``: from the instant the trigger first polls.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param poll_interval: seconds between polls once the stream is caught up.
    """

    def __init__(
        self,
        *,
        asana_audit_log_conn_id: str = AsanaAuditLogHook.default_conn_name,
        start_at: str | datetime | None = None,
        filters: dict[str, str] | None = None,
        poll_interval: float = 60.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        # Kept as an ISO string, so that the kwargs (the trigger's identity) serialise plainly.
        self.start_at = format_instant(parse_instant(start_at, name="start_at")) if start_at else None
        self.filters = dict(filters or {})
        self.poll_interval = poll_interval
        # Fail at parse time, not in the triggerer.
        AuditLogQuery.build(self.start_at or datetime.now(timezone.utc), None, filters=self.filters)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "asana_audit_log_conn_id": self.asana_audit_log_conn_id,
                "start_at": self.start_at,
                "filters": dict(self.filters),
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event per new audit event, forever."""
        hook = AsanaAuditLogHook(self.asana_audit_log_conn_id)
        client = await hook.aget_client()
        start_at = self.start_at or format_instant(datetime.now(timezone.utc))
        # The client's stream position: it remembers the offset, and the latest instant with the gids
        # delivered at it, so each event is delivered once, also after a rejected offset.
        position = StreamPosition(query=AuditLogQuery.build(start_at, None, filters=self.filters))
        try:
            while True:
                pages = client.follow(position)
                try:
                    while (page := await asyncio.to_thread(next, pages, None)) is not None:
                        for event in page.events:
                            yield _trigger_event(_event_payload(event))
                except AsanaAuditLogRetriesExhaustedError as err:
                    self.log.warning("Polling the Asana audit log failed, trying again later: %s", err)
                await asyncio.sleep(self.poll_interval)
        finally:
            hook.close()


def _trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # untyped in Airflow


def _event_payload(event: Event) -> dict[str, Any]:
    """The small, JSON-serialisable part of an audit event that becomes the asset event's payload."""
    return {key: event[key] for key in EVENT_PAYLOAD_KEYS if key in event}
