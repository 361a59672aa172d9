"""The Airflow hook: an ``asana_audit_log`` connection made into an :class:`AsanaAuditLogClient`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook, mask_secret

from airflow_provider_asana_audit.client import (
    DEFAULT_BASE_URL,
    AsanaAuditLogClient,
    AuditLogQuery,
    Event,
    Page,
    RateLimiter,
    RetryPolicy,
)
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogError
from airflow_provider_asana_audit.get_provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    HIDDEN_FIELDS,
    HOOK_NAME,
    PLACEHOLDERS,
    RELABELING,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection


class AsanaAuditLogHook(BaseHook):
    """
    Reads an Asana workspace's audit log through an ``asana_audit_log`` connection.

    The connection holds the service account token in its password, the workspace gid in the extra
    ``workspace_gid``, and optionally the API base URL in its host. It is resolved lazily, on first
    use, never at DAG parse time.

    :param asana_audit_log_conn_id: the connection id.
    :param retry: how transient failures are retried; see :class:`RetryPolicy`.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for a response.
    :param requests_per_minute: if set, every client of this token in this process shares a rate
        limiter at this rate.
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
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.retry = retry
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.requests_per_minute = requests_per_minute

    @cached_property
    def client(self) -> AsanaAuditLogClient:
        """The client for this hook's connection, made on first use."""
        return self.client_for(self.get_connection(self.asana_audit_log_conn_id))

    def get_conn(self) -> AsanaAuditLogClient:
        """Return :attr:`client`."""
        return self.client

    async def aget_client(self) -> AsanaAuditLogClient:
        """Resolve the connection without blocking the event loop (for triggers), then make a client."""
        getter = getattr(BaseHook, "aget_connection", None)
        if getter is not None:  # Airflow 3
            conn = await getter(self.asana_audit_log_conn_id)
        else:  # Airflow 2
            from asgiref.sync import sync_to_async

            conn = await sync_to_async(BaseHook.get_connection)(self.asana_audit_log_conn_id)
        return self.client_for(conn)

    def client_for(
        self,
        conn: Connection,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsanaAuditLogClient:
        """Make a client from a connection object; the keyword arguments override the hook's settings."""
        token = conn.password or ""
        if token:
            mask_secret(token)
        extra = conn.extra_dejson
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
            rate_limiter=(
                RateLimiter.for_token(token, self.requests_per_minute) if self.requests_per_minute else None
            ),
            logger=self.log,
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
        page_size: int = 100,
        offset: str | None = None,
    ) -> Iterator[Page]:
        """
        Yield the pages of events created in ``[start_at, end_at)``, then stop at the end of the events.

        Each page holds its events and ``next_offset``, the stream position to continue from (or to
        poll later for new events). See :meth:`AsanaAuditLogClient.iter_pages`.

        :param offset: continue from a previous page's ``next_offset`` instead of the window's start.
        """
        query = AuditLogQuery(
            start_at=start_at,  # type: ignore[arg-type]  # parsed and validated by AuditLogQuery
            end_at=end_at,  # type: ignore[arg-type]
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
            page_size=page_size,
        )
        return self.client.iter_pages(query, offset=offset)

    def iter_events(
        self,
        start_at: datetime | str | None = None,
        end_at: datetime | str | None = None,
        *,
        event_type: str | None = None,
        actor_type: str | None = None,
        actor_gid: str | None = None,
        resource_gid: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Event]:
        """
        Yield every event created in ``[start_at, end_at)`` exactly once, as Asana returns it, in order.

        Stops at the end of the events captured so far; streams, so memory stays flat.

        :param start_at: inclusive start; an aware datetime (pendulum included) or an ISO 8601 string.
        :param end_at: exclusive end; an aware datetime or an ISO 8601 string.
        :param event_type: only events of this type.
        :param actor_type: only actors of this type (``user``, ``asana``, ``asana_support``,
            ``anonymous``, ``external_administrator``); not with ``actor_gid``.
        :param actor_gid: only events by this actor.
        :param resource_gid: only events about this resource.
        :param page_size: events per request, 1 to 100.
        """
        for page in self.iter_pages(
            start_at,
            end_at,
            event_type=event_type,
            actor_type=actor_type,
            actor_gid=actor_gid,
            resource_gid=resource_gid,
            page_size=page_size,
        ):
            yield from page.events

    def test_connection(self) -> tuple[bool, str]:
        """Read one event to check the URL, the token, its audit-log access and the workspace."""
        try:
            client = self.client_for(
                self.get_connection(self.asana_audit_log_conn_id),
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
