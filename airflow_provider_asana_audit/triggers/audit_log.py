"""
The async side: triggers that wait for, or follow, new events in Asana's audit log.

Both triggers resolve their connection with the hook's async API and run every blocking HTTP call of
the client in a thread, so the triggerer's event loop is never blocked. They keep no state but their
keyword arguments, so a restarted triggerer rebuilds them from :meth:`serialize` alone.

- :class:`AsanaAuditLogTrigger` fires once, when enough events have arrived: the deferrable mode of
  :class:`~airflow_provider_asana_audit.sensors.audit_log.AsanaAuditLogSensor`.
- :class:`AsanaAuditLogEventTrigger` fires once per new event, for Airflow 3's ``AssetWatcher``.

:func:`check_audit_log` is the one check shared by the sensor's ``poke`` and by the trigger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, TypedDict

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_asana_audit.client import (
    FILTER_NAMES,
    MAX_PAGE_SIZE,
    AsanaAuditLogClient,
    AuditLogQuery,
    Event,
    Page,
    StreamPosition,
)
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

#: The keys of an event that :class:`AsanaAuditLogEventTrigger` puts in its payload.
EVENT_PAYLOAD_KEYS = ("gid", "created_at", "event_type", "actor", "resource", "context")


class AuditLogCheck(TypedDict):
    """
    What one check found; pushed to XCom by the sensor and carried by the trigger's event.

    ``count`` is the number of matching events read, at least ``min_events`` when the check is
    satisfied (reading stops there, so it is not the total in the window). ``next_offset`` is the
    stream offset after the last event read: pass it to ``AsanaAuditLogHook.iter_pages(offset=...)``
    (same filters and window) to continue from there; it is ``None`` when nothing matched.
    """

    count: int
    first_created_at: str | None
    first_gid: str | None
    last_created_at: str | None
    last_gid: str | None
    next_offset: str | None


def build_query(
    start_at: datetime | str,
    end_at: datetime | str | None = None,
    filters: Mapping[str, str | None] | None = None,
    *,
    page_size: int = MAX_PAGE_SIZE,
) -> AuditLogQuery:
    """
    Make the query of a check or of a watch; validates everything.

    :raises AsanaAuditLogConfigError: for an unknown filter name or any value the query refuses.
    """
    filters = dict(filters or {})
    unknown = sorted(set(filters) - set(FILTER_NAMES))
    if unknown:
        raise AsanaAuditLogConfigError(
            f"Unknown filter(s) {', '.join(unknown)}: use only {', '.join(FILTER_NAMES)}"
        )
    return AuditLogQuery(
        start_at=start_at,  # type: ignore[arg-type]  # parsed and validated by AuditLogQuery
        end_at=end_at,  # type: ignore[arg-type]
        page_size=page_size,
        **filters,
    )


def check_audit_log(
    client: AsanaAuditLogClient,
    *,
    start_at: datetime | str,
    end_at: datetime | str | None = None,
    filters: Mapping[str, str | None] | None = None,
    min_events: int = 1,
) -> AuditLogCheck:
    """
    Look once for ``min_events`` events matching ``filters`` in ``[start_at, end_at)``.

    One request of ``min(min_events, 100)`` events; only when ``min_events`` is above 100 are further
    pages read, through the client's own pagination, stopping as soon as enough were found. Blocking:
    call it from a thread in async code.

    :return: the count, the first and last event's ``created_at`` and gid, and the offset after them.
    """
    query = build_query(start_at, end_at, filters, page_size=min(min_events, MAX_PAGE_SIZE))
    # One request when a page can hold min_events; else the client's pagination, stopped early.
    pages: Iterator[Page] | list[Page] = (
        [client.get_page(query)] if min_events <= MAX_PAGE_SIZE else client.iter_pages(query)
    )
    found = AuditLogCheck(
        count=0,
        first_created_at=None,
        first_gid=None,
        last_created_at=None,
        last_gid=None,
        next_offset=None,
    )
    for page in pages:
        if page.events:
            if found["first_gid"] is None:
                found["first_created_at"] = page.events[0].get("created_at")
                found["first_gid"] = page.events[0].get("gid")
            found["last_created_at"] = page.events[-1].get("created_at")
            found["last_gid"] = page.events[-1].get("gid")
            found["count"] += len(page.events)
        found["next_offset"] = page.next_offset or found["next_offset"]
        if found["count"] >= min_events:
            break
    return found


class AsanaAuditLogTrigger(BaseTrigger):
    """
    Fire once at least ``min_events`` events match the filters in ``[start_at, end_at)``.

    Polls with :func:`check_audit_log` every ``poll_interval`` seconds. The event's payload is
    ``{"status": "success", **AuditLogCheck}``, or ``{"status": "error", "message": ...}`` if anything
    fails (transient failures are first retried by the client); ``"permanent": True`` marks errors that
    a task retry cannot cure (a refused token, a wrong workspace, bad arguments).

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: events created at or after this instant, as an ISO 8601 string.
    :param end_at: events created before this instant, as an ISO 8601 string, or ``None``.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param min_events: how many events are enough.
    :param poll_interval: seconds between checks.
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
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.start_at = start_at
        self.end_at = end_at
        self.filters = dict(filters or {})
        self.min_events = min_events
        self.poll_interval = poll_interval

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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check every ``poll_interval`` seconds until satisfied; yield one success or error event."""
        client: AsanaAuditLogClient | None = None
        try:
            client = await AsanaAuditLogHook(self.asana_audit_log_conn_id).aget_client()
            while True:
                found = await asyncio.to_thread(
                    check_audit_log,
                    client,
                    start_at=self.start_at,
                    end_at=self.end_at,
                    filters=self.filters,
                    min_events=self.min_events,
                )
                if found["count"] >= self.min_events:
                    self.log.info("Found %d matching Asana audit log events", found["count"])
                    yield _trigger_event({"status": "success", **found})
                    return
                self.log.info(
                    "Found %d of %d Asana audit log events; checking again in %s s",
                    found["count"],
                    self.min_events,
                    self.poll_interval,
                )
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            # The package's messages never contain the token; other errors name their class only.
            yield _trigger_event(
                {
                    "status": "error",
                    "message": str(err) or type(err).__name__,
                    "permanent": isinstance(err, AirflowFailException),
                }
            )
        finally:
            if client is not None:
                client.close()


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
        build_query(self.start_at or datetime.now(timezone.utc), None, self.filters)  # fail at parse time

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
        client = await AsanaAuditLogHook(self.asana_audit_log_conn_id).aget_client()
        start_at = self.start_at or format_instant(datetime.now(timezone.utc))
        # The client's stream position: it remembers the offset, and the latest instant with the gids
        # delivered at it, so each event is delivered once, also after a rejected offset.
        position = StreamPosition(query=build_query(start_at, None, self.filters))
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
            client.close()


def _trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # untyped in Airflow


def _event_payload(event: Event) -> dict[str, Any]:
    """The small, JSON-serialisable part of an audit event that becomes the asset event's payload."""
    return {key: event[key] for key in EVENT_PAYLOAD_KEYS if key in event}
