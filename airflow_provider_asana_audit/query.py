"""
The query model of Asana's audit log: what to read, a page of it, and where a reader stands.

No HTTP here: :class:`~airflow_provider_asana_audit.client.AsanaAuditLogClient` sends these queries;
the sensor and the triggers build and keep them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.rules import check_integer, check_window
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = [
    "ACTOR_TYPES",
    "FILTER_NAMES",
    "MAX_PAGE_SIZE",
    "AuditLogQuery",
    "Event",
    "Page",
    "StreamPosition",
]

#: Asana's ``actor_type`` values. ``event_type`` is deliberately not checked: Asana keeps adding types.
ACTOR_TYPES = frozenset({"user", "asana", "asana_support", "anonymous", "external_administrator"})
#: The names of Asana's four filters, as query parameters and as keyword arguments everywhere.
FILTER_NAMES = ("event_type", "actor_type", "actor_gid", "resource_gid")
MAX_PAGE_SIZE = 100
#: The start of time for a query without ``start_at``, and the origin of the slices' microseconds.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: One audit log event, as Asana returns it.
Event = dict[str, Any]


@dataclass(frozen=True)
class AuditLogQuery:
    """
    What to read: the ``[start_at, end_at)`` window, Asana's four filters, and the page size.

    Validated on construction, before any request is made.

    :param start_at: events created at or after this instant; an aware datetime or an ISO 8601 string.
    :param end_at: events created before this instant; an aware datetime or an ISO 8601 string.
    :param event_type: only events of this type, e.g. ``user_login_failed``.
    :param actor_type: only events by actors of this type, one of :data:`ACTOR_TYPES`.
    :param actor_gid: only events by this actor; not combined with ``actor_type``.
    :param resource_gid: only events about this resource.
    :param page_size: events per request, 1 to 100.

    .. seealso::
        docs/hooks.md#auditlogquery
    """

    start_at: datetime | None = None
    end_at: datetime | None = None
    event_type: str | None = None
    actor_type: str | None = None
    actor_gid: str | None = None
    resource_gid: str | None = None
    page_size: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        for name in ("start_at", "end_at"):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, parse_instant(value, name=name))
                except ValueError as err:
                    raise AsanaAuditLogConfigError(str(err)) from None
        if self.start_at is not None and self.end_at is not None:
            check_window(self.start_at, self.end_at)
        check_integer(self.page_size, name="page_size", minimum=1, maximum=MAX_PAGE_SIZE)
        if self.actor_type is not None and self.actor_type not in ACTOR_TYPES:
            raise AsanaAuditLogConfigError(
                f"actor_type={self.actor_type!r} is not one of Asana's actor types: "
                f"{', '.join(sorted(ACTOR_TYPES))}"
            )
        if self.actor_type is not None and self.actor_gid is not None:
            # Asana's docs say actor_type should not be sent with actor_gid; what Asana then does is
            # undocumented, and an export whose filter Asana might ignore cannot be trusted.
            raise AsanaAuditLogConfigError(
                "actor_type and actor_gid cannot be combined: an actor gid already names one actor, and "
                "Asana's docs say not to send actor_type with it; pass only one of them"
            )
        for name in ("event_type", "actor_gid", "resource_gid"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise AsanaAuditLogConfigError(f"{name}={value!r} must be a non-empty string or None")
        for name in ("actor_gid", "resource_gid"):
            value = getattr(self, name)
            if value is not None and not (value.isascii() and value.isdigit()):
                raise AsanaAuditLogConfigError(
                    f"{name}={value!r} is not an Asana gid: pass the numeric gid as a string, "
                    "e.g. '1200000000000033'"
                )

    @classmethod
    def build(
        cls,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        filters: Mapping[str, str | None] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AuditLogQuery:
        """
        Make a query from a window and a mapping of Asana's filters; the one way callers build queries.

        :param filters: a subset of :data:`FILTER_NAMES`; ``None`` values mean no filter.
        :raises AsanaAuditLogConfigError: for an unknown filter name or any value the query refuses.
        """
        filters = dict(filters or {})
        unknown = sorted(set(filters) - set(FILTER_NAMES))
        if unknown:
            raise AsanaAuditLogConfigError(
                f"Unknown filter(s) {', '.join(unknown)}: use only {', '.join(FILTER_NAMES)}"
            )
        return cls(
            start_at=start_at,  # type: ignore[arg-type]  # parsed and validated in __post_init__
            end_at=end_at,  # type: ignore[arg-type]
            page_size=page_size,
            **filters,
        )

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes this query's filters, as Asana compares them (not the window)."""
        actor = event.get("actor") or {}
        resource = event.get("resource") or {}
        values = {
            "event_type": event.get("event_type"),
            "actor_type": actor.get("actor_type"),
            "actor_gid": actor.get("gid"),
            "resource_gid": resource.get("gid"),
        }
        return all(
            value is None or (values[name] is not None and str(values[name]) == str(value))
            for name, value in self.filters.items()
        )

    @property
    def filters(self) -> dict[str, str | None]:
        """Asana's four filters by name, ``None`` where unset."""
        return {name: getattr(self, name) for name in FILTER_NAMES}

    def params(self) -> dict[str, str]:
        """The query string Asana expects, without ``offset``."""
        params: dict[str, str] = {"limit": str(self.page_size)}
        if self.start_at is not None:
            params["start_at"] = format_instant(self.start_at)
        if self.end_at is not None:
            params["end_at"] = format_instant(self.end_at)
        for name in FILTER_NAMES:
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params


@dataclass(frozen=True)
class Page:
    """
    One response: its events, in Asana's order, and the offset of the page after it.

    :param events: the page's events.
    :param next_offset: where to continue, or to poll later for new events; ``None`` only when nothing
        at all matches the query, and on every page of a read with ``concurrency`` above 1, since no
        single offset continues a read made of several cursors.

    .. seealso::
        docs/hooks.md#iter_pages
    """

    events: list[Event]
    next_offset: str | None

    @property
    def is_last(self) -> bool:
        """True when this page reached the end of the events captured so far."""
        return not self.events or self.next_offset is None


@dataclass
class StreamPosition:
    """
    Where a reader stands in the audit log's stream; :meth:`AsanaAuditLogClient.follow` moves it.

    :param query: the query that ``offset`` belongs to; its ``start_at`` moves forward when reading
        resumes by time after a rejected offset.
    :param offset: the next page's offset, or ``None`` to start at ``query``'s ``start_at``.
    :param last_created_at: the ``created_at`` of the last event read.
    :param gids_at_last: the gids read at ``last_created_at``, which are skipped if seen again.
    :param own_offset: whether ``offset`` came from a page read here.

    .. seealso::
        docs/hooks.md#polling-the-stream, and the stream contract in
        docs/hooks.md#what-the-client-does-about-asanas-api
    """

    query: AuditLogQuery
    offset: str | None = None
    last_created_at: str | None = None
    gids_at_last: set[str] = field(default_factory=set)
    # An offset passed in from elsewhere may stand after events this position never saw, so reading
    # cannot resume by time if it is rejected.
    own_offset: bool = False

    @property
    def resumable(self) -> bool:
        """Whether a rejected offset can be replaced by resuming at :attr:`last_created_at`."""
        return self.last_created_at is not None or self.own_offset

    def admit(self, page: Page) -> list[Event]:
        """
        Advance past ``page``; return its events that were not read before, in order.

        Asana sorts events by ``created_at``, so only the events at the instant read last can have
        been read before: a page boundary inside a group of events sharing one ``created_at``, or a
        re-read after a rejected offset. Those are checked by gid; the rest of the page is new, and
        only the gids at its last instant are remembered for the next page.
        """
        events = page.events
        count, last, gids = len(events), self.last_created_at, self.gids_at_last
        fresh: list[Event] = []
        first_new = 0
        while first_new < count and events[first_new].get("created_at") == last:
            event = events[first_new]
            gid = str(event.get("gid"))
            if gid not in gids:
                gids.add(gid)
                fresh.append(event)
            first_new += 1
        if first_new < count:
            fresh = fresh + events[first_new:] if first_new else events
            self.last_created_at = last = events[-1].get("created_at")
            gids = set()
            index = count - 1
            while index >= first_new and events[index].get("created_at") == last:
                gids.add(str(events[index].get("gid")))
                index -= 1
            self.gids_at_last = gids
        if page.next_offset is not None:
            self.offset, self.own_offset = page.next_offset, True
        return fresh

    def resume_by_time(self) -> None:
        """Drop the offset; restart the query at the last event's ``created_at``, if any was read."""
        if self.last_created_at is not None:
            start_at = parse_instant(self.last_created_at, name="created_at")
            self.query = replace(self.query, start_at=start_at)
        self.offset = None

    @property
    def resume_point(self) -> str:
        """Where reading resumes by time: the last event's ``created_at``, else the query's start."""
        return self.last_created_at or format_instant(self.query.start_at or EPOCH)
