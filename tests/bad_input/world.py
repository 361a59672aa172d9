"""
What a bad-input case runs in, and one runner per public entry point.

A :class:`World` is a fresh stand-in (with a wrong token, and two tokens Asana refuses), a local server
that answers like a misbehaving proxy (an HTML page with any status), and an empty directory tree that
every destination of the case lies in. An :class:`Entry` takes the case's parameters, in one neutral
vocabulary (``start_at``, ``page_size``, ``retry``, ``poll_interval``...), passes them to its entry
point the way a user would, and reports what the user sees as an :class:`Outcome`.

Airflow is imported inside the functions that need it: ``tests/conftest.py`` sets ``AIRFLOW_HOME`` first.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_asana_audit.budget import RateLimiter, RetryPolicy
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator
from airflow_provider_asana_audit.query import FILTER_NAMES, AuditLogQuery
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.testing.responses import Response
from airflow_provider_asana_audit.testing.server import HttpServer
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.triggers.audit_log import (
    AsanaAuditLogEventTrigger,
    AsanaAuditLogTrigger,
)
from airflow_provider_asana_audit.verify import main as verify_main
from airflow_provider_asana_audit.verify import verify_archive
from tests.helpers.clients import FAST_RETRY
from tests.helpers.exports import midnight

__all__ = [
    "END",
    "ENTRIES",
    "PAT_402",
    "PAT_403",
    "START",
    "TOKEN",
    "WRONG_TOKEN",
    "Entry",
    "HtmlServer",
    "Outcome",
    "World",
    "snapshot",
]

#: The stand-in's service account token.
TOKEN = "0/bad-input-service-account-token-9d3a61"
#: A token the stand-in does not know: 401.
WRONG_TOKEN = "0/bad-input-wrong-token-4b7e20"
#: Personal access tokens the stand-in knows but refuses, as Asana does (402 or 403).
PAT_402 = "2/bad-input-personal-access-token-402"
PAT_403 = "2/bad-input-personal-access-token-403"
#: A window inside the stand-in's week of events.
START, END = midnight(3), midnight(2)
#: The connection id every entry point uses (the default).
CONN_ID = AsanaAuditLogHook.default_conn_name
#: Seconds a trigger gets to yield its first event.
TRIGGER_DEADLINE = 30.0


class HtmlServer:
    """
    A local HTTP server that answers every request with an HTML page, as a proxy in the way would.

    It is an application of the stand-in's HTTP transport; ``status`` is the status of every answer:
    change it before the case runs.
    """

    def __init__(self) -> None:
        self.status = 502
        self.content_type = "text/html; charset=utf-8"
        self.body = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
        self._lock = threading.Lock()
        self._requests = 0
        self._http = HttpServer(self._answer)
        self._http.start()

    def _answer(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> Response:
        with self._lock:
            self._requests += 1
        return Response(self.status, self.body, self.content_type)

    @property
    def base_url(self) -> str:
        """An API base URL that points at this server."""
        return f"{self._http.base_url}/api/1.0"

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        with self._lock:
            return self._requests

    def stop(self) -> None:
        self._http.stop()


@dataclass
class World:
    """Where one case runs: the stand-in, the proxy, and the directory tree that must stay unchanged."""

    fake: FakeAsana
    #: Holds ``out`` and whatever a case prepares (e.g. a regular file to write under).
    root: Path
    #: Every destination and ``base_path`` of a case lies in here; it starts empty.
    out: Path
    #: The connection the case set, as the JSON form's dict; ``None``: there is none.
    conn: dict[str, Any] | None = None
    _proxy: HtmlServer | None = None

    @property
    def proxy(self) -> HtmlServer:
        """The misbehaving proxy, started when a case first needs it."""
        if self._proxy is None:
            self._proxy = HtmlServer()
        return self._proxy

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()

    def connection(self) -> dict[str, Any]:
        """The working connection to the stand-in, as the JSON form's dict."""
        return self.fake.connection_dict()

    def requests(self) -> int:
        """Requests made so far, to the stand-in and to the proxy."""
        return self.fake.stats.requests + (self._proxy.requests if self._proxy is not None else 0)


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root``: is it a directory, its size and its modification time."""
    result: dict[str, tuple[bool, int, int]] = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        result[str(path.relative_to(root))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    return result


@dataclass
class Outcome:
    """What the user saw: an error raised, a trigger's error event, or ``test_connection``'s refusal."""

    error: BaseException | None = None
    event: dict[str, Any] | None = None
    refusal: str | None = None
    #: What happened instead of an error, when nothing went wrong.
    instead: str = ""

    @property
    def message(self) -> str | None:
        if self.error is not None:
            return str(self.error)
        if self.event is not None:
            return str(self.event.get("message"))
        return self.refusal


Params = dict[str, Any]
Runner = Callable[[World, Params], Outcome]


@dataclass(frozen=True)
class Entry:
    """
    One public entry point.

    :param name: how the docs name it.
    :param run: passes the case's parameters to it; returns what the user sees.
    :param owners: the neutral parameter names it takes, each mapped to the parameter it covers, as
        ``Owner.parameter`` (see ``tests.bad_input.cases.REQUIRED``).
    """

    name: str
    run: Runner
    owners: Mapping[str, str] = field(default_factory=dict)

    def takes(self, params: Params) -> bool:
        return set(params) <= set(self.owners)


def _raised(call: Callable[[], object]) -> Outcome:
    try:
        result = call()
    except Exception as err:
        return Outcome(error=err)
    return Outcome(instead=f"no error; it returned {result!r}"[:300])


def _hook(params: Params) -> AsanaAuditLogHook:
    return AsanaAuditLogHook(
        params.get("asana_audit_log_conn_id", CONN_ID),
        retry=params.get("retry", FAST_RETRY),
        **_pick(params, "connect_timeout", "read_timeout", "requests_per_minute"),
    )


def _filters(params: Params) -> dict[str, Any]:
    """The filters of the case: a raw ``filters`` mapping, or the four named filters."""
    if "filters" in params:
        return dict(params["filters"])
    return {name: params[name] for name in FILTER_NAMES if name in params}


def _pick(params: Params, *names: str) -> Params:
    return {name: params[name] for name in names if name in params}


# ---------------------------------------------------------------------------------------------- runners


def run_operator(world: World, params: Params) -> Outcome:
    from datetime import timedelta

    kwargs = dict(params)
    if "retry" in kwargs:
        kwargs["request_retry"] = kwargs.pop("retry")
    kwargs.setdefault("request_retry", FAST_RETRY)
    kwargs.setdefault("base_path", str(world.out))
    kwargs.setdefault("settle_period", timedelta(0))

    def execute() -> object:
        operator = AsanaAuditLogExportOperator(task_id="export", **kwargs)
        context: Any = {"data_interval_start": START, "data_interval_end": END}
        return operator.execute(context)

    return _raised(execute)


def _sensor_context(params: Params) -> Any:
    return {} if params.get("start_at", ...) is None else {"data_interval_start": START}


def run_sensor(world: World, params: Params) -> Outcome:
    kwargs = {name: value for name, value in params.items() if value is not None}

    def poke() -> object:
        sensor = AsanaAuditLogSensor(task_id="wait", **kwargs)
        return sensor.poke(_sensor_context(params))

    return _raised(poke)


def run_deferrable_sensor(world: World, params: Params) -> Outcome:
    from airflow.providers.common.compat.sdk import TaskDeferred

    kwargs = {name: value for name, value in params.items() if value is not None}
    try:
        sensor = AsanaAuditLogSensor(task_id="wait", deferrable=True, poke_interval=0.1, **kwargs)
        result = sensor.execute(_sensor_context(params))
    except TaskDeferred:
        return Outcome(instead="no error; it deferred to its trigger")
    except Exception as err:
        return Outcome(error=err)
    return Outcome(instead=f"no error; it returned {result!r}"[:300])


def run_iter_events(world: World, params: Params) -> Outcome:
    method = _pick(params, "start_at", "end_at", *FILTER_NAMES, "page_size", "concurrency")
    return _raised(lambda: list(_hook(params).iter_events(**method)))


def run_iter_pages(world: World, params: Params) -> Outcome:
    method = _pick(params, "start_at", "end_at", *FILTER_NAMES, "page_size", "concurrency", "offset")
    return _raised(lambda: list(_hook(params).iter_pages(**method)))


def run_iter_pages_query(world: World, params: Params) -> Outcome:
    def read() -> object:
        query = AuditLogQuery(**_pick(params, "start_at", "end_at", "page_size"))
        return list(_hook(params).iter_pages(query=query, **_pick(params, "offset", "concurrency")))

    return _raised(read)


def _check_kwargs(params: Params) -> Params:
    return {
        "start_at": params.get("start_at", START),
        "end_at": params.get("end_at"),
        "filters": _filters(params),
        **_pick(params, "min_events"),
    }


def run_check(world: World, params: Params) -> Outcome:
    return _raised(lambda: _hook(params).check(**_check_kwargs(params)))


def run_acheck(world: World, params: Params) -> Outcome:
    return _raised(lambda: asyncio.run(_hook(params).acheck(**_check_kwargs(params))))


def run_test_connection(world: World, params: Params) -> Outcome:
    hook = AsanaAuditLogHook(CONN_ID)
    try:
        ok, message = hook.test_connection()
    except Exception as err:
        return Outcome(instead=f"test_connection raised {err!r} instead of returning (False, message)")
    return Outcome(instead=f"it returned (True, {message!r})") if ok else Outcome(refusal=message)


async def _first(trigger: Any) -> Any:
    run = trigger.run()
    try:
        return await asyncio.wait_for(anext(run), TRIGGER_DEADLINE)
    finally:
        await run.aclose()


def run_trigger(world: World, params: Params) -> Outcome:
    start_at = params.get("start_at", format_instant(START))
    try:
        trigger = AsanaAuditLogTrigger(
            asana_audit_log_conn_id=params.get("asana_audit_log_conn_id", CONN_ID),
            start_at=start_at,
            filters=_filters(params),
            **{"poll_interval": 0.1, **_pick(params, "end_at", "min_events", "poll_interval", "timeout_at")},
        )
        payload = dict(asyncio.run(_first(trigger)).payload)
    except Exception as err:
        return Outcome(error=err)
    if payload.get("status") == "error":
        return Outcome(event=payload)
    return Outcome(instead=f"no error; it fired {payload!r}"[:300])


def run_event_trigger(world: World, params: Params) -> Outcome:
    try:
        trigger = AsanaAuditLogEventTrigger(
            asana_audit_log_conn_id=params.get("asana_audit_log_conn_id", CONN_ID),
            start_at=params.get("start_at", START),
            filters=_filters(params),
            **{"poll_interval": 0.1, **_pick(params, "poll_interval", "lookback")},
        )
        event = asyncio.run(_first(trigger))
    except Exception as err:
        return Outcome(error=err)
    return Outcome(instead=f"no error; it fired {dict(event.payload)!r}"[:300])


def run_client(world: World, params: Params) -> Outcome:
    """The client, made from the case's connection fields as the hook would, and its parameters."""
    conn = world.conn or world.connection()
    kwargs = {
        "token": conn.get("password") or "",
        "workspace_gid": (conn.get("extra") or {}).get("workspace_gid") or "",
        "base_url": conn.get("host") or world.fake.base_url,
        "retry": FAST_RETRY,
        **params,
    }

    def read() -> object:
        with AsanaAuditLogClient(**kwargs) as client:
            return list(client.iter_events(AuditLogQuery(start_at=START, end_at=END)))

    return _raised(read)


def run_query(world: World, params: Params) -> Outcome:
    return _raised(
        lambda: AuditLogQuery.build(
            **_pick(params, "start_at", "end_at", "page_size"), filters=_filters(params)
        )
    )


def run_retry_policy(world: World, params: Params) -> Outcome:
    return _raised(lambda: RetryPolicy(**params))


def run_rate_limiter(world: World, params: Params) -> Outcome:
    # Constructed only: a limiter that accepted a bad value could make acquire() wait forever.
    return _raised(lambda: RateLimiter(**params))


def run_verify_operator(world: World, params: Params) -> Outcome:
    """The archive check as a task, on the (empty) world unless the case names another base path."""
    kwargs = {"base_path": str(world.out), **params}
    context: Any = {}
    return _raised(lambda: AsanaAuditLogVerifyOperator(task_id="verify", **kwargs).execute(context))


def run_verify_archive(world: World, params: Params) -> Outcome:
    kwargs = dict(params)
    base = kwargs.pop("base_path", str(world.out))
    return _raised(lambda: verify_archive(base, **kwargs))


def run_verify_command(world: World, params: Params) -> Outcome:
    """
    ``python -m airflow_provider_asana_audit.verify`` (its ``main``, in this process): a refusal is exit
    status 2 with the message on stderr.
    """
    argv = [str(params.get("base_path", world.out))]
    for name in ("since", "until"):
        if name in params:
            argv += [f"--{name}", str(params[name])]
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            code = verify_main(argv)
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
    if code != 2:
        return Outcome(instead=f"exit status {code}, not 2: {err.getvalue()[-300:]}")
    return Outcome(refusal=err.getvalue())


# ---------------------------------------------------------------------------------------------- entries

_WINDOW = ("start_at", "end_at")
_OPERATOR = "AsanaAuditLogExportOperator"
_SENSOR = "AsanaAuditLogSensor"
_HOOK = "AsanaAuditLogHook"
_HOOK_ARGS = {
    name: f"{_HOOK}.{name}"
    for name in ("asana_audit_log_conn_id", "retry", "connect_timeout", "read_timeout", "requests_per_minute")
}


def _same(owner: str, *names: str) -> dict[str, str]:
    return {name: f"{owner}.{name}" for name in names}


def _hook_method(method: str, *names: str) -> dict[str, str]:
    return {**_HOOK_ARGS, **_same(f"{_HOOK}.{method}", *names)}


def _trigger(owner: str, *names: str) -> dict[str, str]:
    """A trigger's parameters: the four filters are its ``filters`` mapping."""
    return {
        **_same(owner, "asana_audit_log_conn_id", *names),
        **{name: f"{owner}.filters" for name in (*FILTER_NAMES, "filters")},
    }


_SENSOR_ARGS = _same(_SENSOR, "asana_audit_log_conn_id", *_WINDOW, *FILTER_NAMES, "min_events")

#: Every entry point, by the name the docs use.
ENTRIES: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry(
            "operator",
            run_operator,
            {
                **_same(
                    _OPERATOR,
                    *_WINDOW,
                    *FILTER_NAMES,
                    "asana_audit_log_conn_id",
                    "destination",
                    "base_path",
                    "page_size",
                    "concurrency",
                    "requests_per_minute",
                    "settle_period",
                    "on_retention_violation",
                    "signing_conn_id",
                    "object_lock",
                ),
                "retry": f"{_OPERATOR}.request_retry",
            },
        ),
        Entry("sensor", run_sensor, _SENSOR_ARGS),
        Entry("sensor (deferrable)", run_deferrable_sensor, _SENSOR_ARGS),
        Entry(
            "hook.iter_events",
            run_iter_events,
            _hook_method("iter_events", *_WINDOW, *FILTER_NAMES, "page_size", "concurrency"),
        ),
        Entry(
            "hook.iter_pages",
            run_iter_pages,
            _hook_method("iter_pages", *_WINDOW, *FILTER_NAMES, "page_size", "concurrency", "offset"),
        ),
        Entry(
            "hook.iter_pages(query=)",
            run_iter_pages_query,
            _hook_method("iter_pages", "concurrency", "offset")
            | {name: f"{_HOOK}.iter_pages.query" for name in (*_WINDOW, "page_size")},
        ),
        Entry(
            "hook.check",
            run_check,
            _hook_method("check", *_WINDOW, "min_events", "filters")
            | {name: f"{_HOOK}.check.filters" for name in FILTER_NAMES},
        ),
        Entry(
            "hook.acheck",
            run_acheck,
            _hook_method("acheck", *_WINDOW, "min_events", "filters")
            | {name: f"{_HOOK}.acheck.filters" for name in FILTER_NAMES},
        ),
        Entry("hook.test_connection", run_test_connection, {}),
        Entry(
            "trigger",
            run_trigger,
            _trigger("AsanaAuditLogTrigger", *_WINDOW, "min_events", "poll_interval", "timeout_at"),
        ),
        Entry(
            "event trigger",
            run_event_trigger,
            _trigger("AsanaAuditLogEventTrigger", "start_at", "poll_interval", "lookback"),
        ),
        Entry(
            "client",
            run_client,
            _same(
                "AsanaAuditLogClient",
                "token",
                "workspace_gid",
                "base_url",
                "connect_timeout",
                "read_timeout",
                "retry",
                "spill_dir",
            ),
        ),
        Entry(
            "AuditLogQuery",
            run_query,
            {
                **_same("AuditLogQuery", *_WINDOW, *FILTER_NAMES, "page_size"),
                "filters": "AuditLogQuery.build.filters",
            },
        ),
        Entry(
            "RetryPolicy",
            run_retry_policy,
            _same("RetryPolicy", "max_attempts", "max_elapsed", "backoff_base", "backoff_max"),
        ),
        Entry(
            "RateLimiter",
            run_rate_limiter,
            _same("RateLimiter", "requests_per_minute", "burst", "max_in_flight"),
        ),
        Entry(
            "verify operator",
            run_verify_operator,
            _same(
                "AsanaAuditLogVerifyOperator",
                "base_path",
                "since",
                "until",
                "report_path",
                "html_report_path",
                "public_keys",
                "published_seal_hashes",
            ),
        ),
        Entry(
            "verify_archive",
            run_verify_archive,
            {
                **_same("verify_archive", "since", "until", "staging_grace_period", "published_seal_hashes"),
                "base_path": "verify_archive.base",
            },
        ),
        Entry(
            "verify command",
            run_verify_command,
            {**_same("verify_archive", "since", "until"), "base_path": "verify_archive.base"},
        ),
    )
}
