"""
The Airflow hook: an ``asana_audit_log`` connection made into an :class:`AsanaAuditLogClient`.

It also holds the one "are there ``min_events`` matching events?" check, which the sensor calls through
:meth:`AsanaAuditLogHook.check` and the trigger through :meth:`AsanaAuditLogHook.acheck`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import closing
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict

# Re-exported from the Task SDK on Airflow 3.3, so not "explicitly exported" to mypy there.
from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined,unused-ignore]
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_asana_audit.budget import (
    ASANA_MAX_IN_FLIGHT,
    ASANA_REQUESTS_PER_MINUTE,
    RateLimiter,
    RequestBudget,
    RetryPolicy,
    check_max_in_flight,
    check_requests_per_minute,
    check_retry,
)
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogError,
)
from airflow_provider_asana_audit.get_provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    HIDDEN_FIELDS,
    HOOK_NAME,
    PLACEHOLDERS,
    RELABELING,
)
from airflow_provider_asana_audit.query import MAX_PAGE_SIZE, AuditLogQuery, Event, Page
from airflow_provider_asana_audit.rules import check_integer, check_retention
from airflow_provider_asana_audit.transport import DEFAULT_BASE_URL

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

__all__ = ["AsanaAuditLogHook", "AuditLogCheck"]

#: What ``get_connection`` raises for an unknown connection id: on Airflow 3 the Task SDK's class,
#: which ``airflow.exceptions`` re-exports only from 3.3 on.
_CONNECTION_NOT_FOUND: tuple[type[Exception], ...] = (AirflowNotFoundException,)
try:
    from airflow.sdk.exceptions import AirflowNotFoundException as _SdkNotFound
except ImportError:  # Airflow 2
    pass
else:
    _CONNECTION_NOT_FOUND = (AirflowNotFoundException, _SdkNotFound)


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


class AsanaAuditLogHook(BaseHook):
    """
    Reads an Asana workspace's audit log through an ``asana_audit_log`` connection.

    The connection holds the service account token in its password, the workspace gid in the extra
    ``workspace_gid``, and optionally the API base URL in its host. It is resolved lazily, on first
    use, never at DAG parse time. The token's budget comes from the extras too:
    ``requests_per_minute`` (default 1,500, Asana's limit) and ``max_concurrent_requests`` (default
    50), shared by every process of the fleet through Redis when ``budget_redis_conn_id`` names a
    Redis connection, else by every client of the token in this process.

    :param asana_audit_log_conn_id: the connection id.
    :param retry: how transient failures are retried; see :class:`RetryPolicy`.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for a response.
    :param requests_per_minute: the token's budget as this hook spends it, in requests a minute;
        default the connection's extra ``requests_per_minute``, else 1,500.
    :raises AsanaAuditLogConfigError: for a ``retry`` that is not a :class:`RetryPolicy` or a
        ``requests_per_minute`` that is not a positive number. A connection that does not exist or
        lacks the token or the workspace gid, or a bad timeout, raises it on first use.

    .. seealso::
        docs/hooks.md#asanaauditloghook
    """

    conn_name_attr = "asana_audit_log_conn_id"
    default_conn_name = "asana_audit_log_default"
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        asana_audit_log_conn_id: str = default_conn_name,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        requests_per_minute: float | None = None,
    ) -> None:
        super().__init__()
        # Checked here, where the hook is made, not at the first request.
        check_retry(retry)
        check_requests_per_minute(requests_per_minute)
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.retry = retry
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.requests_per_minute = requests_per_minute
        self._client: AsanaAuditLogClient | None = None

    @property
    def client(self) -> AsanaAuditLogClient:
        """The client for this hook's connection, made on first use."""
        if self._client is None:
            self._client = self.client_for(self._connection())
        return self._client

    def _connection(self) -> Connection:
        """The hook's connection; :class:`AsanaAuditLogConfigError` saying what to do if there is none."""
        try:
            return self.get_connection(self.asana_audit_log_conn_id)
        except _CONNECTION_NOT_FOUND as err:
            raise self._no_connection() from err

    def _no_connection(self) -> AsanaAuditLogConfigError:
        conn_id = self.asana_audit_log_conn_id
        variable = f"AIRFLOW_CONN_{str(conn_id).upper()}"
        return AsanaAuditLogConfigError(
            f"There is no Airflow connection {conn_id!r}: create one of type {CONN_TYPE!r} (in the UI, "
            f"with `airflow connections add`, as the environment variable {variable} or in a secrets "
            "backend), or pass the id of an existing one as asana_audit_log_conn_id"
        )

    def get_conn(self) -> AsanaAuditLogClient:
        """Return :attr:`client`."""
        return self.client

    async def aget_client(self) -> AsanaAuditLogClient:
        """
        :attr:`client`, made without blocking the event loop (for triggers).

        Before Airflow 3.3.2, ``BaseHook.aget_connection`` and ``Connection.extra_dejson`` mask secrets
        with a synchronous call to the supervisor, which raises ``DeadlockImminentError`` on a
        triggerer's event loop; ``common.compat`` picks the safe way for the running version, and the
        token is masked from a thread for the same reason.
        """
        if self._client is None:
            try:
                conn = await get_async_connection(self.asana_audit_log_conn_id, self)
            except _CONNECTION_NOT_FOUND as err:
                raise self._no_connection() from err
            extra = await get_async_extra_dejson(conn)
            self._client = await asyncio.to_thread(self._make_client, conn, extra)
        return self._client

    def close(self) -> None:
        """Close the client's HTTP session, if a client was made."""
        if self._client is not None:
            self._client.close()

    def client_for(
        self,
        conn: Connection,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsanaAuditLogClient:
        """Make a client from a connection object; the keyword arguments override the hook's settings."""
        return self._make_client(
            conn,
            conn.extra_dejson,
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    def _make_client(
        self,
        conn: Connection,
        extra: Mapping[str, Any],
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsanaAuditLogClient:
        token = conn.password or ""
        if token:
            mask_secret(token)
        workspace_gid = extra.get("workspace_gid") or extra.get(f"extra__{CONN_TYPE}__workspace_gid")
        if not workspace_gid:
            raise AsanaAuditLogConfigError(
                f"Connection {conn.conn_id!r} has no workspace_gid: set the extra 'workspace_gid' to the "
                "numeric gid of the Asana workspace or organisation"
            )
        if not token:
            raise AsanaAuditLogConfigError(
                f"Connection {conn.conn_id!r} has no token: put the Asana service account token in its "
                "password"
            )
        return AsanaAuditLogClient(
            token=token,
            workspace_gid=str(workspace_gid),
            base_url=self._base_url(conn),
            connect_timeout=connect_timeout or self.connect_timeout,
            read_timeout=read_timeout or self.read_timeout,
            retry=retry or self.retry,
            rate_limiter=self._budget(
                conn,
                extra,
                token,
                lease=(connect_timeout or self.connect_timeout) + (read_timeout or self.read_timeout),
            ),
            logger=self.log,
        )

    def _budget(
        self, conn: Connection, extra: Mapping[str, Any], token: str, *, lease: float
    ) -> RequestBudget:
        """
        The token's budget: in Redis when the connection names one, else this process's limiter.

        :param lease: the longest a request can take, after which a killed process's request stops
            counting as in flight.
        """
        requests_per_minute = self.requests_per_minute or _extra_number(conn, extra, "requests_per_minute")
        max_in_flight = _extra_number(conn, extra, "max_concurrent_requests")
        check_requests_per_minute(requests_per_minute)
        check_max_in_flight(max_in_flight, name="max_concurrent_requests")
        redis_conn_id = extra.get("budget_redis_conn_id") or None
        if redis_conn_id is None:
            return RateLimiter.for_token(
                token.strip(),
                requests_per_minute or ASANA_REQUESTS_PER_MINUTE,
                max_in_flight=int(max_in_flight or ASANA_MAX_IN_FLIGHT),
            )
        from airflow_provider_asana_audit.redis_budget import RedisBudget

        return RedisBudget.for_token(
            token.strip(),
            redis_conn_id=str(redis_conn_id),
            requests_per_minute=requests_per_minute or ASANA_REQUESTS_PER_MINUTE,
            max_in_flight=int(max_in_flight or ASANA_MAX_IN_FLIGHT),
            lease=lease + 10,
        )

    @staticmethod
    def _base_url(conn: Connection) -> str:
        host = (conn.host or "").strip()
        if not host:
            return DEFAULT_BASE_URL
        if "://" not in host:
            # A URI-form connection loses the scheme; never assume less than TLS.
            host = f"https://{host}"
        return host

    def iter_pages(
        self,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        query: AuditLogQuery | None = None,
        offset: str | None = None,
        concurrency: int = 1,
    ) -> Generator[Page, None, None]:
        """
        Yield the pages of events created in ``[start_at, end_at)``, then stop at the end of the events.

        :param start_at: inclusive start; an aware datetime (pendulum included) or an ISO 8601 string.
        :param end_at: exclusive end; an aware datetime or an ISO 8601 string.
        :param event_type: only events of this type.
        :param actor_type: only actors of this type; not with ``actor_gid``.
        :param actor_gid: only events by this actor.
        :param resource_gid: only events about this resource.
        :param page_size: events per request, 1 to 100.
        :param query: a ready-made query, instead of the window, filters and page size.
        :param offset: continue from a previous page's ``next_offset`` instead of the window's start.
        :param concurrency: requests at a time, 1 to 32. Close the iterator if you stop early.
        :raises AsanaAuditLogConfigError: for a bad argument, or ``query`` with any of the window,
            filters and page size; :class:`AsanaAuditLogRetentionError` when ``end_at`` lies where
            Asana keeps no events.

        .. seealso::
            docs/hooks.md#iter_pages
        """
        filters = {
            "event_type": event_type,
            "actor_type": actor_type,
            "actor_gid": actor_gid,
            "resource_gid": resource_gid,
        }
        if query is None:
            query = AuditLogQuery.build(start_at, end_at, filters=filters, page_size=page_size)
        elif (start_at, end_at, page_size, *filters.values()) != (None, None, MAX_PAGE_SIZE, *[None] * 4):
            raise AsanaAuditLogConfigError(
                "iter_pages takes either query= or the window, filters and page_size, not both: the "
                "query already holds them"
            )
        check_retention(query.end_at)
        return self.client.iter_pages(query, offset=offset, concurrency=concurrency)

    def iter_events(
        self,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        concurrency: int = 1,
    ) -> Iterator[Event]:
        """
        Yield every event created in ``[start_at, end_at)`` exactly once, as Asana returns it, in order.

        :param start_at: inclusive start; an aware datetime (pendulum included) or an ISO 8601 string.
        :param end_at: exclusive end; an aware datetime or an ISO 8601 string.
        :param event_type: only events of this type.
        :param actor_type: only actors of this type (``user``, ``asana``, ``asana_support``,
            ``anonymous``, ``external_administrator``); not with ``actor_gid``.
        :param actor_gid: only events by this actor.
        :param resource_gid: only events about this resource.
        :param page_size: events per request, 1 to 100.
        :param concurrency: requests at a time, 1 to 32; see :meth:`iter_pages`.
        :raises AsanaAuditLogConfigError: for a missing or incomplete connection or a bad argument, before
            any request; :class:`AsanaAuditLogRetentionError` when ``end_at`` lies where Asana keeps no
            events (before 2021-10-08, or more than 90 days ago).

        .. seealso::
            docs/hooks.md#iter_events
        """
        query = AuditLogQuery.build(
            start_at,
            end_at,
            filters={
                "event_type": event_type,
                "actor_type": actor_type,
                "actor_gid": actor_gid,
                "resource_gid": resource_gid,
            },
            page_size=page_size,
        )
        check_retention(query.end_at)
        # A generator of its own, so that nothing is checked or resolved before the first event is
        # asked for; closing it closes the client's read, stopping a concurrent read's threads.
        yield from self.client.iter_events(query, concurrency=concurrency)

    def check(
        self,
        *,
        start_at: datetime | str,
        end_at: datetime | str | None = None,
        filters: Mapping[str, str | None] | None = None,
        min_events: int = 1,
    ) -> AuditLogCheck:
        """
        Look once for ``min_events`` events matching ``filters`` in ``[start_at, end_at)``.

        One request of ``min(min_events, 100)`` events; only when ``min_events`` is above 100 are further
        pages read, through the client's own pagination, stopping as soon as enough were found.
        Blocking: async code calls :meth:`acheck`.

        :param start_at: events created at or after this instant.
        :param end_at: events created before this instant.
        :param filters: a subset of Asana's four filters; ``None`` values mean no filter.
        :param min_events: how many are enough.
        :return: the count, the first and last event's ``created_at`` and gid, and the offset after them.

        .. seealso::
            docs/hooks.md#check-and-acheck
        """
        check_integer(min_events, name="min_events", minimum=1)
        query = AuditLogQuery.build(
            start_at, end_at, filters=filters, page_size=min(min_events, MAX_PAGE_SIZE)
        )
        check_retention(query.end_at)
        # One request when a page can hold min_events; else the client's pagination, stopped early.
        if min_events <= MAX_PAGE_SIZE:
            return _found([self.client.get_page(query)], min_events)
        with closing(self.client.iter_pages(query)) as pages:
            return _found(pages, min_events)

    async def acheck(
        self,
        *,
        start_at: datetime | str,
        end_at: datetime | str | None = None,
        filters: Mapping[str, str | None] | None = None,
        min_events: int = 1,
    ) -> AuditLogCheck:
        """:meth:`check` for async code: the connection and the requests are handled off the event loop."""
        await self.aget_client()
        return await asyncio.to_thread(
            partial(self.check, start_at=start_at, end_at=end_at, filters=filters, min_events=min_events)
        )

    def test_connection(self) -> tuple[bool, str]:
        """Read one event to check the URL, the token, its audit-log access and the workspace."""
        try:
            client = self.client_for(
                self._connection(),
                retry=RetryPolicy(max_attempts=2, max_elapsed=15, backoff_base=0.5),  # answer quickly
                connect_timeout=5,
                read_timeout=20,
            )
        except AsanaAuditLogError as err:
            return False, str(err)
        try:
            page = client.get_page(AuditLogQuery(page_size=1))
        except AsanaAuditLogError as err:
            where = f"workspace {client.workspace_gid} at {client.base_url}"
            return False, f"Cannot read the audit log of {where}: {err}"
        finally:
            client.close()
        found = "events are readable" if page.events else "no events are stored yet"
        return True, f"Connected to {client.base_url}: workspace {client.workspace_gid}'s audit log, {found}."

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The custom form fields for Airflow 2.11, 3.0 and 3.1 (3.2+ reads the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import StringField

        return {
            name: StringField(
                lazy_gettext(field["label"]), widget=BS3TextFieldWidget(), description=field["description"]
            )
            for name, field in CONN_FIELDS.items()
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Which standard fields to hide and relabel, for Airflow 2.11, 3.0 and 3.1."""
        return {
            "hidden_fields": list(HIDDEN_FIELDS),
            "relabeling": dict(RELABELING),
            "placeholders": dict(PLACEHOLDERS),
        }


def _extra_number(conn: Connection, extra: Mapping[str, Any], name: str) -> float | None:
    """A number from the connection's extra (the form stores text), ``None`` when unset."""
    value = extra.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        raise AsanaAuditLogConfigError(
            f"Connection {conn.conn_id!r} has {name}={value!r} in its extra: make it a positive number, "
            "or remove it for Asana's limit"
        ) from None
    return int(number) if number.is_integer() else number


def _found(pages: Iterable[Page], min_events: int) -> AuditLogCheck:
    """What :meth:`AsanaAuditLogHook.check` reports of ``pages``, read until ``min_events`` were found."""
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
