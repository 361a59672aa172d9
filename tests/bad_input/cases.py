"""
The table of bad inputs: each row a bad input, its error, what its message must say, and where it is
checked. ``docs/bad-input.md`` is generated from this module (``python -m tests.bad_input``), and
``test_bad_input.py`` fails when the two differ, so the table users read is the table that is tested.

Messages are checked by fragments: each must appear in the message, the problem first, then the
advice (what to change). ``{param}`` and ``{value}`` in a fragment stand for the name and the
``repr`` of the case's first parameter.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_asana_audit.budget import RateLimiter, RetryPolicy
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAuthError,
    AsanaAuditLogConfigError,
    AsanaAuditLogInvalidOffsetError,
    AsanaAuditLogNotFoundError,
    AsanaAuditLogPermanentAPIError,
    AsanaAuditLogRetentionError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.get_provider_info import CONN_FIELDS, HIDDEN_FIELDS
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.testing import Fault
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger, AsanaAuditLogTrigger
from airflow_provider_asana_audit.verify import verify_archive
from tests.bad_input.world import END, ENTRIES, PAT_402, PAT_403, START, TOKEN, WRONG_TOKEN, World
from tests.helpers.exports import midnight

__all__ = [
    "ACCEPTED",
    "CASES",
    "DOC",
    "REQUIRED",
    "RUNS",
    "TABLE_END",
    "TABLE_START",
    "Accepted",
    "Case",
    "Run",
    "plan",
    "render_tables",
]

ConnectionOf = Callable[[World], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Case:
    """
    One bad input.

    :param id: the test id.
    :param where: the parameter or connection field, as the docs name it.
    :param bad: the bad value(s), in words.
    :param error: the exact class of the error raised (a trigger reports it in an error event,
        ``permanent`` when the class fails a task without retries).
    :param says: fragments the message must contain: the problem, then what to change.
    :param change: what to change, in words, for the docs.
    :param entries: the entry points it is checked through (names of ``world.ENTRIES``).
    :param variants: parameter sets, in the neutral vocabulary of ``world.ENTRIES``; each is run
        through every entry point that takes all of its parameters. Values may be functions of the world.
    :param connection: the connection the case runs with; default the working one; ``None``: none.
    :param covers: connection fields it covers, as ``connection.<field>``.
    :param covers_params: parameters it covers through every entry point that takes them, without
        passing them (a missing connection covers each entry point's connection id).
    :param prepare: sets the world up (faults, files) before the run.
    :param requests: how many requests may be made; ``None``: at least one.
    :param skip: a reason to skip it here, or ``None``.
    """

    id: str
    where: str
    bad: str
    error: type[BaseException]
    says: tuple[str, ...]
    change: str
    entries: tuple[str, ...]
    variants: tuple[Mapping[str, Any], ...] = ({},)
    connection: ConnectionOf | None = None
    covers: tuple[str, ...] = ()
    covers_params: tuple[str, ...] = ()
    prepare: Callable[[World], None] | None = None
    requests: int | None = 0
    skip: Callable[[], str | None] | None = None

    def fragments(self, variant: Mapping[str, Any]) -> list[str]:
        """The fragments for one variant, with ``{param}`` and ``{value}`` filled in."""
        name, value = next(iter(variant.items()), ("", None))
        return [text.replace("{param}", name).replace("{value}", repr(value)) for text in self.says]


def _conn(**changes: Any) -> ConnectionOf:
    """
    The working connection with some fields changed; ``workspace_gid=`` changes the extra, and
    ``extra=`` adds to it.
    """

    def make(world: World) -> dict[str, Any]:
        conn = world.connection()
        for key, value in changes.items():
            if key == "workspace_gid":
                conn["extra"] = {} if value is None else {"workspace_gid": value}
            elif key == "extra":
                conn["extra"] = {**conn["extra"], **value}
            else:
                conn[key] = value(world) if callable(value) else value
        return conn

    return make


def _no_connection(world: World) -> None:
    return None


def _inject(fault: Fault) -> Callable[[World], None]:
    def prepare(world: World) -> None:
        world.fake.inject(fault, count=100)

    return prepare


def _proxy(status: int) -> Callable[[World], None]:
    def prepare(world: World) -> None:
        world.proxy.status = status

    return prepare


def _with_credentials(world: World) -> str:
    """The stand-in's URL with the token (URL-encoded, as a URL needs) as its password."""
    scheme, rest = world.fake.base_url.split("://", 1)
    return f"{scheme}://svc:{quote(TOKEN, safe='')}@{rest}"


def _regular_file(world: World) -> None:
    (world.root / "a-file").write_text("not a directory\n")


def _amazon_installed() -> str | None:
    if importlib.util.find_spec("airflow.providers.amazon") is not None:
        return "apache-airflow-providers-amazon is installed, so s3:// is supported here"
    return None


#: Every entry point that reads a connection.
CONNECTION_ENTRIES = (
    "operator",
    "sensor",
    "sensor (deferrable)",
    "hook.iter_events",
    "hook.check",
    "hook.acheck",
    "hook.test_connection",
    "trigger",
    "event trigger",
)
#: ... and the client, for the connection fields it is given directly.
WITH_CLIENT = (*CONNECTION_ENTRIES, "client")
#: Entry points that take Asana's filters and a window.
FILTERED = (
    "operator",
    "sensor",
    "hook.iter_events",
    "hook.iter_pages",
    "hook.check",
    "trigger",
    "event trigger",
    "AuditLogQuery",
)
#: Entry points that refuse a window where Asana keeps no events.
RETENTION_CHECKED = (
    "operator",
    "sensor",
    "hook.iter_events",
    "hook.iter_pages",
    "hook.check",
    "hook.acheck",
    "trigger",
)
#: The archive check: its operator, its function and its command (which exits with status 2).
VERIFY = ("verify operator", "verify_archive", "verify command")
_SERVICE_ACCOUNT = "put a valid Asana service account token in the connection's password"
_WITHIN_RETENTION = "within the last 90 days"
_CHECK_PROXY = ("check the API base URL", "HTTPS_PROXY")

CASES: tuple[Case, ...] = (
    # ----------------------------------------------------------------------------------- connection
    Case(
        id="connection-missing",
        where="connection id",
        bad="no connection with that id",
        error=AsanaAuditLogConfigError,
        says=(
            "There is no Airflow connection 'asana_audit_log_default'",
            "create one of type 'asana_audit_log'",
        ),
        change="Create the connection (UI, `airflow connections add`, `AIRFLOW_CONN_<ID>`, a secrets "
        "backend) or pass the id of an existing one.",
        entries=CONNECTION_ENTRIES,
        connection=_no_connection,
        covers=("connection.conn_id",),
        covers_params=("asana_audit_log_conn_id",),
    ),
    Case(
        id="token-empty",
        where="connection: password (token)",
        bad="empty",
        error=AsanaAuditLogConfigError,
        says=("has no token", "put the Asana service account token in its password"),
        change="Put the service account token in the connection's password.",
        entries=CONNECTION_ENTRIES,
        connection=_conn(password=""),
        covers=("connection.password",),
    ),
    Case(
        id="token-wrong",
        where="connection: password (token)",
        bad="a token Asana does not know (HTTP 401)",
        error=AsanaAuditLogAuthError,
        says=("HTTP 401", _SERVICE_ACCOUNT),
        change="Paste the service account token again; it may have been revoked or mistyped.",
        entries=WITH_CLIENT,
        connection=_conn(password=WRONG_TOKEN),
        covers=("connection.password",),
        requests=1,
    ),
    Case(
        id="token-personal-402",
        where="connection: password (token)",
        bad="a personal access token, or a plan without the audit log API (HTTP 402)",
        error=AsanaAuditLogAuthError,
        says=("HTTP 402", "needs a service account token"),
        change="Use a service account token of an Enterprise+ organisation (or legacy Enterprise, or "
        "Enterprise with the Compliance Management add-on).",
        entries=WITH_CLIENT,
        connection=_conn(password=PAT_402),
        covers=("connection.password",),
        requests=1,
    ),
    Case(
        id="token-personal-403",
        where="connection: password (token)",
        bad="a token without access to this audit log (HTTP 403)",
        error=AsanaAuditLogAuthError,
        says=("HTTP 403", "use a service account token of the organisation that owns the workspace"),
        change="Use a service account token of the organisation that owns the workspace.",
        entries=WITH_CLIENT,
        connection=_conn(password=PAT_403),
        covers=("connection.password",),
        requests=1,
    ),
    Case(
        id="workspace-unknown",
        where="connection: extra `workspace_gid`",
        bad="a workspace Asana does not know (HTTP 404)",
        error=AsanaAuditLogNotFoundError,
        says=("HTTP 404", "Check the workspace_gid in the connection's extra"),
        change="Set the gid of the organisation the token belongs to (Admin console, or `GET /workspaces`).",
        entries=WITH_CLIENT,
        connection=_conn(workspace_gid="1999999999999999"),
        covers=("connection.extra.workspace_gid",),
        requests=1,
    ),
    Case(
        id="workspace-not-numeric",
        where="connection: extra `workspace_gid`",
        bad="not a number (`acme`), or blank",
        error=AsanaAuditLogConfigError,
        says=("is not an Asana gid", "set the extra 'workspace_gid' to the numeric gid"),
        change="Use the workspace's numeric gid, e.g. `1200000000000001`.",
        entries=WITH_CLIENT,
        variants=({"workspace_gid": "acme"}, {"workspace_gid": "  "}),
        covers=("connection.extra.workspace_gid",),
    ),
    Case(
        id="workspace-missing",
        where="connection: extra `workspace_gid`",
        bad="missing",
        error=AsanaAuditLogConfigError,
        says=("has no workspace_gid", "set the extra 'workspace_gid'"),
        change='Fill in "Workspace GID" (under Extra Fields in the form) or add it to the extra JSON.',
        entries=CONNECTION_ENTRIES,
        connection=_conn(workspace_gid=None),
        covers=("connection.extra.workspace_gid",),
    ),
    Case(
        id="host-not-a-url",
        where="connection: host (API base URL)",
        bad="not a URL (`https://app asana com/api/1.0`, `ftp://...`, a port that is not a number)",
        error=AsanaAuditLogConfigError,
        says=("The API base URL", "use e.g. 'https://app.asana.com/api/1.0'"),
        change="Leave the host empty for Asana, or give a full `https://` URL.",
        entries=WITH_CLIENT,
        variants=(
            {"base_url": "https://app asana com/api/1.0"},
            {"base_url": "ftp://app.asana.com/api/1.0"},
            {"base_url": "https://app.asana.com:port/api/1.0"},
        ),
        covers=("connection.host",),
    ),
    Case(
        id="host-plain-http",
        where="connection: host (API base URL)",
        bad="plain `http://` to a host that is not loopback",
        error=AsanaAuditLogConfigError,
        says=("Refusing to send the token over plain http", "use an https:// URL"),
        change="Use `https://`; plain `http://` is only accepted for 127.0.0.1, ::1 and localhost.",
        entries=WITH_CLIENT,
        variants=({"base_url": "http://app.asana.com/api/1.0"},),
        covers=("connection.host",),
    ),
    Case(
        id="host-with-credentials",
        where="connection: host (API base URL)",
        bad="a user name or password in the URL (`https://svc:<token>@app.asana.com/api/1.0`)",
        error=AsanaAuditLogConfigError,
        says=("must not contain a user name or password", "put the token in the connection's password"),
        change="Remove them from the host; the token belongs in the password field, which is masked.",
        entries=WITH_CLIENT,
        variants=({"base_url": _with_credentials},),
        covers=("connection.host",),
    ),
    Case(
        id="host-wrong-path",
        where="connection: host (API base URL)",
        bad="a server without Asana's API there (HTTP 404), e.g. without `/api/1.0`",
        error=AsanaAuditLogNotFoundError,
        says=("HTTP 404", "the API base URL in its host"),
        change="Leave the host empty, or end it in `/api/1.0`.",
        entries=WITH_CLIENT,
        connection=_conn(host=lambda world: world.fake.base_url.removesuffix("/api/1.0")),
        covers=("connection.host",),
        requests=1,
    ),
    # ----------------------------------------------------------------------------------- responses
    Case(
        id="response-not-json",
        where="response",
        bad="HTTP 200 whose body is not JSON (an HTML page)",
        error=AsanaAuditLogRetriesExhaustedError,
        says=("not Asana's JSON", "text/html", *_CHECK_PROXY),
        change="Something between Airflow and Asana answers: check the host and the proxy settings "
        "(`HTTPS_PROXY`, `NO_PROXY`). Retried first; the task is retried by Airflow.",
        entries=("operator", "hook.iter_events", "hook.test_connection", "client"),
        prepare=_inject(Fault.NOT_JSON),
        requests=None,
    ),
    Case(
        id="response-proxy-502-html",
        where="response",
        bad="an HTML error page from a proxy (HTTP 502, `text/html`)",
        error=AsanaAuditLogRetriesExhaustedError,
        says=("HTTP 502", "text/html", *_CHECK_PROXY),
        change="Check the proxy between Airflow and Asana, and the host. Retried first; the task is "
        "retried by Airflow.",
        entries=("operator", "hook.iter_events", "hook.test_connection", "client"),
        connection=_conn(host=lambda world: world.proxy.base_url),
        prepare=_proxy(502),
        requests=None,
    ),
    Case(
        id="response-proxy-403-html",
        where="response",
        bad="an HTML refusal from a proxy (HTTP 403, `text/html`)",
        error=AsanaAuditLogPermanentAPIError,
        says=("other than Asana's API returned HTTP 403", "text/html", *_CHECK_PROXY),
        change="The proxy, not Asana, refused the request: check its rules and `HTTPS_PROXY`/`NO_PROXY`; "
        "the token is not to blame.",
        entries=WITH_CLIENT,
        connection=_conn(host=lambda world: world.proxy.base_url),
        prepare=_proxy(403),
        requests=None,
    ),
    # ----------------------------------------------------------------------------------- the query
    Case(
        id="page-size-range",
        where="`page_size`",
        bad="0, or 101 and more",
        error=AsanaAuditLogConfigError,
        says=("page_size={value}", "1 to 100"),
        change="Use 1 to 100 (100, the default, is fastest).",
        entries=("operator", "hook.iter_events", "hook.iter_pages", "AuditLogQuery"),
        variants=({"page_size": 0}, {"page_size": 101}),
    ),
    Case(
        id="page-size-type",
        where="`page_size`",
        bad="not an integer (`'100'`)",
        error=AsanaAuditLogConfigError,
        says=("page_size={value}", "must be an integer from 1 to 100"),
        change="Pass an int (`page_size` is not templated).",
        entries=("operator", "hook.iter_events", "AuditLogQuery"),
        variants=({"page_size": "100"},),
    ),
    Case(
        id="actor-type-and-gid",
        where="`actor_type` with `actor_gid`",
        bad="both set",
        error=AsanaAuditLogConfigError,
        says=("actor_type and actor_gid cannot be combined", "pass only one of them"),
        change="Drop `actor_type`: an actor gid names one actor already.",
        entries=FILTERED,
        variants=({"actor_type": "user", "actor_gid": "1200000000000033"},),
    ),
    Case(
        id="actor-type-unknown",
        where="`actor_type`",
        bad="not one of Asana's actor types (`robot`)",
        error=AsanaAuditLogConfigError,
        says=(
            "actor_type='robot' is not one of Asana's actor types",
            "anonymous, asana, asana_support, external_administrator, user",
        ),
        change="Use one of `user`, `asana`, `asana_support`, `anonymous`, `external_administrator`.",
        entries=FILTERED,
        variants=({"actor_type": "robot"},),
    ),
    Case(
        id="gid-not-numeric",
        where="`actor_gid`, `resource_gid`",
        bad="not a gid (an email address, a name)",
        error=AsanaAuditLogConfigError,
        says=("{param}={value} is not an Asana gid", "pass the numeric gid"),
        change="Pass the numeric gid as a string, e.g. `'1200000000000033'` (look it up with Asana's "
        "users or tasks API).",
        entries=FILTERED,
        variants=({"actor_gid": "alice@example.com"}, {"resource_gid": "Q3 launch"}),
    ),
    Case(
        id="filter-empty",
        where="`event_type`, `actor_type`, `actor_gid`, `resource_gid` (hook, query)",
        bad="an empty string",
        error=AsanaAuditLogConfigError,
        says=("{param}='' must be a non-empty string or None",),
        change='Pass `None` for no filter. (The operator and sensor read an empty rendering as "not set".)',
        entries=("hook.iter_events", "hook.iter_pages", "AuditLogQuery"),
        variants=({"event_type": ""}, {"resource_gid": ""}),
    ),
    Case(
        id="filter-unknown",
        where="`filters` (hook.check, triggers, `AuditLogQuery.build`)",
        bad="a name that is not one of Asana's four filters",
        error=AsanaAuditLogConfigError,
        says=("Unknown filter(s) user", "use only event_type, actor_type, actor_gid, resource_gid"),
        change="Use only `event_type`, `actor_type`, `actor_gid`, `resource_gid`.",
        entries=("hook.check", "hook.acheck", "trigger", "event trigger", "AuditLogQuery"),
        variants=({"filters": {"user": "1200000000000033"}},),
    ),
    Case(
        id="window-reversed",
        where="`start_at`, `end_at`",
        bad="`start_at` at or after `end_at`",
        error=AsanaAuditLogConfigError,
        says=("must be before end_at",),
        change="Swap them, or fix the template that renders them.",
        entries=(
            "operator",
            "sensor",
            "hook.iter_events",
            "hook.iter_pages",
            "hook.check",
            "hook.acheck",
            "trigger",
            "AuditLogQuery",
        ),
        variants=({"start_at": END, "end_at": START},),
    ),
    Case(
        id="instant-naive",
        where="`start_at`, `end_at`",
        bad="without a time zone (naive `datetime`, `'2026-01-01T00:00:00'`)",
        error=AsanaAuditLogConfigError,
        says=("has no timezone", "pass an aware datetime or a string ending in 'Z' or '+00:00'"),
        change="Use an aware datetime (`tzinfo=timezone.utc`, pendulum) or add `Z`.",
        entries=(*FILTERED, "hook.acheck"),
        variants=(
            {"start_at": START.replace(tzinfo=None)},
            {"end_at": END.replace(tzinfo=None).isoformat()},
        ),
    ),
    Case(
        id="instant-unparsable",
        where="`start_at`, `end_at`",
        bad="not ISO 8601 (`yesterday`, month 13)",
        error=AsanaAuditLogConfigError,
        says=("is not an ISO 8601 date-time", "use e.g. '2024-05-14T00:00:00Z'"),
        change="Use an ISO 8601 instant, e.g. `{{ data_interval_start }}` or `2024-05-14T00:00:00Z`.",
        entries=(*FILTERED, "hook.acheck"),
        variants=({"start_at": "yesterday"}, {"end_at": "2026-13-01T00:00:00Z"}),
    ),
    Case(
        id="instant-type",
        where="`start_at`, `end_at`",
        bad="neither a datetime nor a string (a Unix timestamp)",
        error=AsanaAuditLogConfigError,
        says=("must be a timezone-aware datetime or an ISO 8601 string",),
        change="Convert it: `datetime.fromtimestamp(ts, timezone.utc)`.",
        entries=(*FILTERED, "hook.acheck"),
        variants=({"start_at": 1715644800},),
    ),
    Case(
        id="window-before-2021-10-08",
        where="`start_at`, `end_at`",
        bad="a window that ends before 2021-10-08",
        error=AsanaAuditLogRetentionError,
        says=("is before 2021-10-08", _WITHIN_RETENTION),
        change="Nothing exists that early: move the DAG's `start_date` or the backfill's from-date. "
        "The operator can skip instead (`on_retention_violation='skip'`).",
        entries=RETENTION_CHECKED,
        variants=(
            {
                "start_at": datetime(2021, 9, 1, tzinfo=timezone.utc),
                "end_at": datetime(2021, 9, 2, tzinfo=timezone.utc),
            },
        ),
    ),
    Case(
        id="window-past-retention",
        where="`start_at`, `end_at`",
        bad="a window that ends more than 90 days ago",
        error=AsanaAuditLogRetentionError,
        says=("Asana deletes audit events after 90 days", _WITHIN_RETENTION),
        change="Asana deleted those events: export within 90 days (a daily DAG does). The operator can "
        "skip instead (`on_retention_violation='skip'`).",
        entries=RETENTION_CHECKED,
        variants=({"start_at": midnight(100), "end_at": midnight(99)},),
    ),
    Case(
        id="concurrency-range",
        where="`concurrency`",
        bad="0, or above 32",
        error=AsanaAuditLogConfigError,
        says=("concurrency={value} must be an integer from 1 to 32",),
        change="Use 1 to 32; a few (4 to 8) already reach Asana's rate limit.",
        entries=("operator", "hook.iter_events", "hook.iter_pages", "hook.iter_pages(query=)"),
        variants=({"concurrency": 0}, {"concurrency": 33}),
    ),
    Case(
        id="concurrency-type",
        where="`concurrency`",
        bad="not an integer (`'4'`)",
        error=AsanaAuditLogConfigError,
        says=("concurrency='4' must be an integer from 1 to 32",),
        change="Pass an int (`concurrency` is not templated).",
        entries=("operator", "hook.iter_events", "hook.iter_pages", "hook.iter_pages(query=)"),
        variants=({"concurrency": "4"},),
    ),
    Case(
        id="concurrency-with-offset",
        where="`concurrency` with `offset`",
        bad="above 1, with an offset",
        error=AsanaAuditLogConfigError,
        says=("cannot continue from an offset", "use concurrency=1 to continue from an offset"),
        change="Continue from an offset with `concurrency=1`.",
        entries=("hook.iter_pages", "hook.iter_pages(query=)"),
        variants=({"concurrency": 4, "offset": "an-offset", "start_at": START, "end_at": END},),
    ),
    Case(
        id="concurrency-open-window",
        where="`concurrency` without `end_at`",
        bad="above 1, with an open window",
        error=AsanaAuditLogConfigError,
        says=("needs both start_at and end_at", "pass a closed window or use concurrency=1"),
        change="Give both ends, or read with `concurrency=1`.",
        entries=("hook.iter_events", "hook.iter_pages", "hook.iter_pages(query=)"),
        variants=({"concurrency": 4, "start_at": START},),
    ),
    Case(
        id="offset-invalid",
        where="`offset`",
        bad="not an offset Asana issued for this query, or expired",
        error=AsanaAuditLogInvalidOffsetError,
        says=("HTTP 400", "The pagination offset expired or belongs to another query"),
        change="Pass a `next_offset` of the same filters and window, soon after it was read; or start "
        "from the window's start.",
        entries=("hook.iter_pages", "hook.iter_pages(query=)"),
        variants=({"offset": "not-an-offset"},),
        requests=1,
    ),
    Case(
        id="min-events",
        where="`min_events`",
        bad="0, negative, or not an integer",
        error=AsanaAuditLogConfigError,
        says=("min_events={value} must be an integer of at least 1",),
        change="Use an int of at least 1.",
        entries=("sensor", "sensor (deferrable)", "hook.check", "hook.acheck", "trigger"),
        variants=({"min_events": 0}, {"min_events": -1}, {"min_events": "3"}, {"min_events": True}),
    ),
    # ----------------------------------------------------------------------------------- sensor
    Case(
        id="sensor-no-start",
        where="`start_at` (sensor)",
        bad="unset, in a run without a data interval",
        error=AsanaAuditLogConfigError,
        says=("start_at has no default", "pass start_at"),
        change="Pass `start_at`, e.g. `'{{ dag_run.start_date }}'`.",
        entries=("sensor", "sensor (deferrable)"),
        variants=({"start_at": None},),
    ),
    Case(
        id="conn-id-empty",
        where="`asana_audit_log_conn_id`",
        bad="empty",
        error=AsanaAuditLogConfigError,
        says=("asana_audit_log_conn_id", "must name an Airflow connection"),
        change="Name a connection, or leave it out for `asana_audit_log_default`.",
        entries=("operator", "sensor", "sensor (deferrable)"),
        variants=({"asana_audit_log_conn_id": ""},),
    ),
    # ----------------------------------------------------------------------------------- triggers
    Case(
        id="poll-interval",
        where="`poll_interval` (triggers)",
        bad="0 or negative",
        error=AsanaAuditLogConfigError,
        says=("poll_interval={value} must be a positive number of seconds",),
        change="Use a positive number of seconds (default 60).",
        entries=("trigger", "event trigger"),
        variants=({"poll_interval": 0}, {"poll_interval": -1}),
    ),
    Case(
        id="lookback",
        where="`lookback` (event trigger)",
        bad="negative, or not a number",
        error=AsanaAuditLogConfigError,
        says=("lookback={value} must be a number of seconds, 0 or more",),
        change="Use 0 or more seconds.",
        entries=("event trigger",),
        variants=({"lookback": -1}, {"lookback": "600"}),
    ),
    Case(
        id="timeout-at",
        where="`timeout_at` (trigger)",
        bad="not ISO 8601",
        error=AsanaAuditLogConfigError,
        says=("timeout_at='soon' is not an ISO 8601 date-time", "use e.g. '2024-05-14T00:00:00Z'"),
        change="Use an ISO 8601 instant, or `None` for no deadline.",
        entries=("trigger",),
        variants=({"timeout_at": "soon"},),
    ),
    # ----------------------------------------------------------------------------------- operator
    Case(
        id="settle-period",
        where="`settle_period`",
        bad="negative, or not a `timedelta`",
        error=AsanaAuditLogConfigError,
        says=("settle_period=", "must be a non-negative timedelta, e.g. timedelta(minutes=30)"),
        change="Use a `timedelta` of 0 or more.",
        entries=("operator",),
        variants=({"settle_period": timedelta(minutes=-1)}, {"settle_period": 1800}),
    ),
    Case(
        id="on-retention-violation",
        where="`on_retention_violation`",
        bad="not `fail` or `skip`",
        error=AsanaAuditLogConfigError,
        says=("on_retention_violation='ignore' must be 'fail' or 'skip'",),
        change="Use `'fail'` or `'skip'`.",
        entries=("operator",),
        variants=({"on_retention_violation": "ignore"},),
    ),
    Case(
        id="destination-empty",
        where="`destination`",
        bad="empty or blank (a template that rendered to nothing)",
        error=AsanaAuditLogConfigError,
        says=("destination is an empty string", "pass a path or URI, or None"),
        change="Fix the template, or pass `None` for the default layout.",
        entries=("operator",),
        variants=({"destination": ""}, {"destination": "   "}),
    ),
    Case(
        id="destination-type",
        where="`destination`",
        bad="not a path, URI or `ObjectStoragePath` (a number, a dict)",
        error=AsanaAuditLogConfigError,
        says=("destination must be a path, a URI or an ObjectStoragePath",),
        change="Pass a string, a `pathlib.Path` or an `ObjectStoragePath`.",
        entries=("operator",),
        variants=({"destination": 5}, {"destination": {"path": "/tmp/x.jsonl"}}),
    ),
    Case(
        id="destination-relative",
        where="`destination`",
        bad="a relative path",
        error=AsanaAuditLogConfigError,
        says=("is a relative path", "use an absolute path or a URI"),
        change="Use an absolute path or a URI (`file:///...`, `s3://...`).",
        entries=("operator",),
        variants=({"destination": "exports/x.jsonl"},),
    ),
    Case(
        id="destination-directory",
        where="`destination`",
        bad="a directory (ends in `/`)",
        error=AsanaAuditLogConfigError,
        says=("names a directory", "name the file"),
        change="Name the file, e.g. `.../export.jsonl.gz`; or use `base_path` for the default layout.",
        entries=("operator",),
        variants=({"destination": lambda world: f"{world.out}/"},),
    ),
    Case(
        id="destination-scheme",
        where="`destination`, `base_path`",
        bad="a scheme no installed filesystem supports (`foo://`)",
        error=AsanaAuditLogConfigError,
        says=("Airflow cannot open foo:// paths", "install the Airflow provider that registers"),
        change="Use `file://`, `s3://`, `gs://`, ... and install the provider of that filesystem.",
        entries=("operator",),
        variants=({"destination": "foo://bucket/x.jsonl"}, {"base_path": "foo://bucket/asana"}),
    ),
    Case(
        id="destination-s3-without-provider",
        where="`destination`",
        bad="`s3://` without the Amazon provider",
        error=AsanaAuditLogConfigError,
        says=("Airflow cannot open s3:// paths", "install apache-airflow-providers-amazon"),
        change="Install `apache-airflow-providers-amazon` in every worker.",
        entries=("operator",),
        variants=({"destination": "s3://bucket/asana/x.jsonl"},),
        skip=_amazon_installed,
    ),
    Case(
        id="destination-unwritable",
        where="`destination`, `base_path`",
        bad="a place that cannot be written (under a regular file)",
        error=AsanaAuditLogConfigError,
        says=("Cannot write the export to", "choose another destination or base_path"),
        change="Point it at a directory the workers may create and write, or fix its permissions.",
        entries=("operator",),
        variants=(
            {"destination": lambda world: f"{world.root}/a-file/x.jsonl"},
            {"base_path": lambda world: f"{world.root}/a-file"},
        ),
        prepare=_regular_file,
    ),
    Case(
        id="base-path-relative",
        where="`base_path`",
        bad="a relative path",
        error=AsanaAuditLogConfigError,
        says=("base_path 'exports' is a relative path", "use an absolute path or a URI"),
        change="Use an absolute path or a URI.",
        entries=("operator",),
        variants=({"base_path": "exports"},),
    ),
    # ----------------------------------------------------------------------------------- archive check
    Case(
        id="verify-base-relative",
        where="`base_path` (verify operator), `base` (`verify_archive`, command)",
        bad="a relative path",
        error=AsanaAuditLogConfigError,
        says=("'exports' is a relative path", "use an absolute path or a URI"),
        change="Use the export's base path as an absolute path or a URI (`file:///data/asana`, `s3://...`).",
        entries=VERIFY,
        variants=({"base_path": "exports"},),
    ),
    Case(
        id="verify-base-scheme",
        where="`base_path` (verify operator), `base` (`verify_archive`, command)",
        bad="a scheme no installed filesystem supports (`foo://`)",
        error=AsanaAuditLogConfigError,
        says=("foo://", "install the Airflow provider that registers this filesystem"),
        change="Install the provider of the archive's filesystem (`s3://`: Amazon, `gs://`: Google) where "
        "the check runs.",
        entries=VERIFY,
        variants=({"base_path": "foo://bucket/asana"},),
    ),
    Case(
        id="verify-range-reversed",
        where="`since`, `until` (archive check)",
        bad="`since` at or after `until`",
        error=AsanaAuditLogConfigError,
        says=("must be before until",),
        change="Swap them, or fix the template that renders them.",
        entries=VERIFY,
        variants=({"since": "2026-01-02", "until": "2026-01-01"},),
    ),
    Case(
        id="verify-bound-unparsable",
        where="`since`, `until` (archive check)",
        bad="neither a date nor an ISO 8601 instant (`last week`, month 13)",
        error=AsanaAuditLogConfigError,
        says=("is not an ISO 8601 date-time", "or a date such as '2026-11-01' (midnight UTC)"),
        change="Use a date (`2026-11-01`, midnight UTC) or an instant with its offset "
        "(`2026-11-01T06:00:00Z`), e.g. `{{ macros.ds_add(ds, -30) }}`.",
        entries=VERIFY,
        variants=({"since": "last week"}, {"until": "2026-13-01"}),
    ),
    Case(
        id="verify-bound-naive",
        where="`since`, `until` (archive check)",
        bad="an instant without a time zone (`2026-11-01T06:00:00`)",
        error=AsanaAuditLogConfigError,
        says=("has no timezone", "or a date such as '2026-11-01' (midnight UTC)"),
        change="Add `Z` or the offset, or give a date.",
        entries=VERIFY,
        variants=({"until": "2026-11-01T06:00:00"},),
    ),
    Case(
        id="verify-report-relative",
        where="`report_path` (verify operator)",
        bad="a relative path",
        error=AsanaAuditLogConfigError,
        says=("is a relative path", "use an absolute path or a URI"),
        change="Name the report's file by an absolute path or a URI, e.g. "
        "`s3://bucket/reports/{{ ds }}.json`.",
        entries=("verify operator",),
        variants=({"report_path": "reports/verify.json"},),
    ),
    Case(
        id="verify-report-directory",
        where="`report_path` (verify operator)",
        bad="a directory (ends in `/`)",
        error=AsanaAuditLogConfigError,
        says=("names a directory", "name the file"),
        change="Name the report's file, e.g. `.../reports/{{ ds }}.json`.",
        entries=("verify operator",),
        variants=({"report_path": lambda world: f"{world.out}/"},),
    ),
    Case(
        id="verify-html-report-relative",
        where="`html_report_path` (verify operator)",
        bad="a relative path",
        error=AsanaAuditLogConfigError,
        says=("is a relative path", "use an absolute path or a URI"),
        change="Name the page's file by an absolute path or a URI, e.g. `s3://bucket/reports/{{ ds }}.html`.",
        entries=("verify operator",),
        variants=({"html_report_path": "reports/verify.html"},),
    ),
    Case(
        id="verify-public-key-unreadable",
        where="`public_keys` (verify operator)",
        bad="a path of a file that does not exist, or text that is not a public key",
        error=AsanaAuditLogConfigError,
        says=("public key", "make-key wrote"),
        change="Give each public key as PEM text or the path of the `.pub` file that `make-key` wrote.",
        entries=("verify operator",),
        variants=(
            {"public_keys": lambda world: [f"{world.out}/missing.pub"]},
            {"public_keys": ["-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"]},
        ),
    ),
    Case(
        id="verify-published-hashes-without-keys",
        where="`published_seal_hashes` (verify operator, `verify_archive`)",
        bad="given without the public keys",
        error=AsanaAuditLogConfigError,
        says=("are checked against the signed seals", "too"),
        change="Give the public keys too (`public_keys`, `keyring`): a seal hash means nothing without them.",
        entries=("verify operator", "verify_archive"),
        variants=({"published_seal_hashes": ["0" * 64]},),
    ),
    Case(
        id="export-signing-destination",
        where="`signing_conn_id` (export operator)",
        bad="a connection id given with `destination`, or not a connection id",
        error=AsanaAuditLogConfigError,
        says=("signing_conn_id",),
        change="Sign exports of the default layout: give `base_path` instead of `destination`, and a "
        "connection id whose password holds the private key.",
        entries=("operator",),
        variants=(
            {
                "signing_conn_id": "asana_audit_signing",
                "destination": lambda world: f"{world.out}/day.jsonl.gz",
            },
            {"signing_conn_id": 42},
        ),
    ),
    Case(
        id="export-object-lock-type",
        where="`object_lock` (export operator)",
        bad="not an `ObjectLock` (a dict)",
        error=AsanaAuditLogConfigError,
        says=("object_lock must be an ObjectLock",),
        change="Pass `ObjectLock(mode='COMPLIANCE', days=2555)` from `airflow_provider_asana_audit.storage`.",
        entries=("operator",),
        variants=({"object_lock": {"mode": "COMPLIANCE", "days": 7}},),
    ),
    Case(
        id="verify-grace-period",
        where="`staging_grace_period` (`verify_archive`)",
        bad="zero, negative, or not a `timedelta`",
        error=AsanaAuditLogConfigError,
        says=("staging_grace_period=", "must be a positive timedelta"),
        change="Use at least the exports' grace period, `timedelta(minutes=10)` (the default).",
        entries=("verify_archive",),
        variants=({"staging_grace_period": timedelta(0)}, {"staging_grace_period": 600}),
    ),
    Case(
        id="retry-type",
        where="`request_retry` (operator), `retry` (hook, client)",
        bad="not a `RetryPolicy` (a dict)",
        error=AsanaAuditLogConfigError,
        says=("must be a RetryPolicy",),
        change="Pass `RetryPolicy(max_attempts=..., ...)`, or `None` for the default.",
        entries=("operator", "hook.iter_events", "client"),
        variants=({"retry": {"max_attempts": 2}},),
    ),
    Case(
        id="requests-per-minute",
        where="`requests_per_minute`",
        bad="0, negative, or not a number",
        error=AsanaAuditLogConfigError,
        says=("requests_per_minute={value}", "must be a positive number"),
        change="Use a positive number (Asana allows 1,500 a minute on paid plans), or `None` for no cap.",
        entries=("operator", "hook.iter_events", "RateLimiter"),
        variants=({"requests_per_minute": 0}, {"requests_per_minute": -5}, {"requests_per_minute": "fast"}),
    ),
    # ----------------------------------------------------------------------------------- client
    Case(
        id="client-token-empty",
        where="`token` (client)",
        bad="empty or blank",
        error=AsanaAuditLogConfigError,
        says=("No Asana token", "put the service account token in the connection's password"),
        change="Pass the service account token.",
        entries=("client",),
        variants=({"token": ""}, {"token": "   "}),
    ),
    Case(
        id="timeouts",
        where="`connect_timeout`, `read_timeout` (hook, client)",
        bad="0 or negative",
        error=AsanaAuditLogConfigError,
        says=("{param}={value} must be a positive number of seconds",),
        change="Use a positive number of seconds (defaults: 10 and 60).",
        entries=("hook.iter_events", "client"),
        variants=({"connect_timeout": 0}, {"read_timeout": -1}),
    ),
    Case(
        id="spill-dir",
        where="`spill_dir` (client)",
        bad="a directory that does not exist",
        error=AsanaAuditLogConfigError,
        says=("spill_dir=", "is not a directory"),
        change="Pass an existing directory, or `None` for the system's temporary directory.",
        entries=("client",),
        variants=({"spill_dir": lambda world: str(world.root / "no-such-directory")},),
    ),
    # ----------------------------------------------------------------------- RetryPolicy, RateLimiter
    Case(
        id="retry-max-attempts",
        where="`RetryPolicy.max_attempts`",
        bad="0 or less",
        error=AsanaAuditLogConfigError,
        says=("max_attempts={value}", "at least 1"),
        change="Use 1 or more (1: no retry).",
        entries=("RetryPolicy",),
        variants=({"max_attempts": 0},),
    ),
    Case(
        id="retry-max-attempts-type",
        where="`RetryPolicy.max_attempts`",
        bad="not an integer (`'3'`)",
        error=AsanaAuditLogConfigError,
        says=("max_attempts={value} must be an integer of at least 1",),
        change="Pass an int.",
        entries=("RetryPolicy",),
        variants=({"max_attempts": "3"},),
    ),
    Case(
        id="retry-times",
        where="`RetryPolicy.max_elapsed`, `backoff_base`, `backoff_max`",
        bad="negative",
        error=AsanaAuditLogConfigError,
        says=("{param}={value} must be a number of seconds, 0 or more",),
        change="Use 0 or more seconds.",
        entries=("RetryPolicy",),
        variants=({"max_elapsed": -1}, {"backoff_base": -1}, {"backoff_max": -1}),
    ),
    Case(
        id="rate-limiter-burst",
        where="`RateLimiter.burst`",
        bad="0 or negative (no request could ever be sent)",
        error=AsanaAuditLogConfigError,
        says=("burst={value} must be an integer of at least 1",),
        change="Use 1 or more, or `None` for one second's worth of requests.",
        entries=("RateLimiter",),
        variants=({"burst": 0, "requests_per_minute": 60}, {"burst": -1, "requests_per_minute": 60}),
    ),
    Case(
        id="rate-limiter-max-in-flight",
        where="`RateLimiter.max_in_flight`",
        bad="0 or negative (no request could ever be sent)",
        error=AsanaAuditLogConfigError,
        says=("max_in_flight={value} must be an integer of at least 1",),
        change="Use 1 or more (Asana allows about 50), or `None` for no cap.",
        entries=("RateLimiter",),
        variants=(
            {"max_in_flight": 0, "requests_per_minute": 60},
            {"max_in_flight": -1, "requests_per_minute": 60},
        ),
    ),
    Case(
        id="connection-requests-per-minute",
        where="connection: extra `requests_per_minute`",
        bad="not a number (`fast`)",
        error=AsanaAuditLogConfigError,
        says=("has requests_per_minute='fast' in its extra", "make it a positive number"),
        change="Use the token's requests a minute, e.g. `1500`; leave it empty for Asana's limit.",
        entries=CONNECTION_ENTRIES,
        connection=_conn(extra={"requests_per_minute": "fast"}),
        covers=("connection.extra.requests_per_minute",),
    ),
    Case(
        id="connection-max-concurrent-requests",
        where="connection: extra `max_concurrent_requests`",
        bad="0 or negative",
        error=AsanaAuditLogConfigError,
        says=("max_concurrent_requests=0 must be an integer of at least 1",),
        change="Use the token's requests in flight, e.g. `50`; leave it empty for Asana's limit.",
        entries=CONNECTION_ENTRIES,
        connection=_conn(extra={"max_concurrent_requests": "0"}),
        covers=("connection.extra.max_concurrent_requests",),
    ),
)


@dataclass(frozen=True)
class Accepted:
    """Parameters that have no bad value of their own, and why."""

    keys: tuple[str, ...]
    why: str


ACCEPTED: tuple[Accepted, ...] = (
    Accepted(
        ("verify_archive.keyring",),
        "A `Keyring`, which refuses an empty list or a key that is not an Ed25519 public key when it is "
        "made (see the evidence messages).",
    ),
    Accepted(
        (
            "AsanaAuditLogExportOperator.event_type",
            "AsanaAuditLogSensor.event_type",
        ),
        "Any event type: Asana keeps adding types, so none is refused here (an unknown one matches "
        'nothing). Empty, blank or `None` renderings mean "no filter" in the operator and sensor.',
    ),
    Accepted(
        ("AsanaAuditLogExportOperator.destination_conn_id",),
        "Handed to Airflow's object storage, which reports an unknown connection itself; `file://` "
        "destinations ignore it.",
    ),
    Accepted(
        (
            "AsanaAuditLogExportOperator.deferrable",
            "AsanaAuditLogExportOperator.allow_event_removal",
            "AsanaAuditLogSensor.deferrable",
            "AsanaAuditLogVerifyOperator.fail_when_not_whole",
            "RateLimiter.slow_start",
        ),
        "True or false.",
    ),
    Accepted(
        ("AsanaAuditLogVerifyOperator.storage_conn_id", "verify_archive.conn_id"),
        "Handed to Airflow's object storage, which reports an unknown connection itself; `file://` "
        "archives ignore it.",
    ),
    Accepted(
        ("AsanaAuditLogVerifyOperator.export_dag_id", "verify_archive.dag_id"),
        "Any DAG id: it is only named in the re-export commands the check prints.",
    ),
    Accepted(
        ("verify_archive.now", "verify_archive.log"),
        "The reference instant (an aware datetime; default this machine's clock) and the logger, for "
        "callers and tests.",
    ),
    Accepted(
        (
            "AsanaAuditLogClient.rate_limiter",
            "AsanaAuditLogClient.logger",
            "AsanaAuditLogClient.session",
            "AsanaAuditLogClient.progress_interval",
        ),
        "Objects the client uses as given; a `progress_interval` of 0 or less logs progress after "
        "every page.",
    ),
    Accepted(
        ("AsanaAuditLogEventTrigger.asset_name",),
        "Any asset name. On Airflow 3.3+ a name that is not one of the assets the trigger watches "
        "ends the trigger with a configuration error when it starts.",
    ),
    Accepted(
        ("RateLimiter.clock", "RateLimiter.sleep"),
        "For tests: the clock and the sleep function.",
    ),
    Accepted(
        ("connection.extra.budget_redis_conn_id",),
        "An Airflow Redis connection id: Airflow reports an unknown one itself, and a Redis that does "
        "not answer fails the read with what to do (`The shared request budget in Redis connection "
        "'<id>' failed`).",
    ),
    Accepted(
        ("connection.login", "connection.schema", "connection.port"),
        "Hidden in the connection form and ignored.",
    ),
)


def _parameters(callable_: Callable[..., Any], *, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(callable_).parameters.items()
        if name not in ("self", *skip)
        and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    ]


def _required() -> frozenset[str]:
    """Every user-facing parameter and connection field, as ``Owner.parameter``."""
    owners: dict[str, list[str]] = {
        "AsanaAuditLogExportOperator": _parameters(AsanaAuditLogExportOperator.__init__),
        "AsanaAuditLogSensor": _parameters(AsanaAuditLogSensor.__init__),
        "AsanaAuditLogVerifyOperator": _parameters(AsanaAuditLogVerifyOperator.__init__),
        "verify_archive": _parameters(verify_archive),
        "AsanaAuditLogTrigger": _parameters(AsanaAuditLogTrigger.__init__),
        "AsanaAuditLogEventTrigger": _parameters(AsanaAuditLogEventTrigger.__init__),
        "AsanaAuditLogHook": _parameters(AsanaAuditLogHook.__init__),
        "AsanaAuditLogClient": _parameters(AsanaAuditLogClient.__init__),
        "AuditLogQuery": [f.name for f in dataclasses.fields(AuditLogQuery)],
        "AuditLogQuery.build": [
            name
            for name in _parameters(AuditLogQuery.build)
            if name not in ("start_at", "end_at", "page_size")
        ],
        "RetryPolicy": [f.name for f in dataclasses.fields(RetryPolicy)],
        "RateLimiter": _parameters(RateLimiter.__init__),
        "connection": [
            "conn_id",
            "password",
            "host",
            *(f"extra.{name}" for name in CONN_FIELDS),
            *(name for name in HIDDEN_FIELDS if name not in ("extra", "password", "host")),
        ],
    }
    for method in ("iter_events", "iter_pages", "check", "acheck"):
        owners[f"AsanaAuditLogHook.{method}"] = _parameters(getattr(AsanaAuditLogHook, method))
    return frozenset(f"{owner}.{name}" for owner, names in owners.items() for name in names)


#: Every user-facing parameter and connection field, as ``Owner.parameter``.
REQUIRED = _required()


#: Parameters that are connection fields everywhere but in the client, which takes them directly.
CONNECTION_PARAMS = {"token": "password", "base_url": "host", "workspace_gid": "extra.workspace_gid"}


@dataclass(frozen=True)
class Run:
    """One case, through one entry point, with one of its variants."""

    case: Case
    entry: str
    variant: Mapping[str, Any]
    #: What the entry point is given.
    params: Mapping[str, Any]
    #: Connection fields the variant changes (``password``, ``host``, ``extra.workspace_gid``).
    connection_changes: Mapping[str, Any]

    @property
    def id(self) -> str:
        index = self.case.variants.index(self.variant)
        suffix = f"-{index}" if len(self.case.variants) > 1 else ""
        return f"{self.case.id}{suffix}[{self.entry}]"

    def covers(self) -> set[str]:
        """The parameters this run covers, as ``Owner.parameter``."""
        owners = ENTRIES[self.entry].owners
        keys = {owners[name] for name in self.params}
        keys.update(f"connection.{name}" for name in self.connection_changes)
        keys.update(owners[name] for name in self.case.covers_params if name in owners)
        return keys | set(self.case.covers)


def plan(case: Case) -> list[Run]:
    """Every run of a case: each entry point with each variant it takes."""
    runs = []
    for name in case.entries:
        entry = ENTRIES[name]
        for variant in case.variants:
            if name == "client":
                params, changes = dict(variant), {}
            else:
                params = {k: v for k, v in variant.items() if k not in CONNECTION_PARAMS}
                changes = {CONNECTION_PARAMS[k]: v for k, v in variant.items() if k in CONNECTION_PARAMS}
            if entry.takes(params):
                runs.append(Run(case, name, variant, params, changes))
    return runs


#: Every run of every case.
RUNS = [run for case in CASES for run in plan(case)]


# ----------------------------------------------------------------------------------------------- docs

#: The users' table.
DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
TABLE_START = "<!-- bad-input-table: generated by `python -m tests.bad_input`; do not edit -->"
TABLE_END = "<!-- bad-input-table: end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _says(case: Case) -> str:
    fragments = (
        f"`{text.replace('{param}', '<parameter>').replace('{value}', '<value>')}`" for text in case.says
    )
    return " … ".join(fragments)


#: Short names for the usual sets of entry points, in the docs.
_ENTRY_GROUPS = {
    CONNECTION_ENTRIES: "every entry point that reads a connection",
    WITH_CLIENT: "every entry point that reads a connection, and the client",
}


def render_tables() -> str:
    """The two tables of ``docs/bad-input.md``, with their markers."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    lines = [
        TABLE_START,
        "",
        "| Parameter or field | Bad input | Error | Retried? | The message says | What to change "
        "| Checked through |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        retried = "no" if issubclass(case.error, AirflowFailException) else "yes"
        lines.append(
            "| "
            + " | ".join(
                _cell(text)
                for text in (
                    case.where,
                    case.bad,
                    f"`{case.error.__name__}`",
                    retried,
                    _says(case),
                    case.change,
                    _ENTRY_GROUPS.get(case.entries, ", ".join(case.entries)),
                )
            )
            + " |"
        )
    lines += [
        "",
        "Parameters with no bad value of their own:",
        "",
        "| Parameter | Why |",
        "|---|---|",
    ]
    for accepted in ACCEPTED:
        lines.append(f"| {_cell(', '.join(f'`{key}`' for key in accepted.keys))} | {_cell(accepted.why)} |")
    lines += ["", TABLE_END]
    return "\n".join(lines)
